"""A trained model as a self-contained folder: weights plus everything inference needs.

``weights.pt``      the network's ``state_dict`` (no pickled code)
``mmx_model.json``  architecture name and arguments, the class table it was trained on,
                    its training priors P_N(c), normalisation, tile size and margin,
                    metrics and provenance (git commit, data hash, params), and the
                    SHA-256 of ``weights.pt``

Loading runs no code from the folder: the metadata is JSON, the network class comes from
mmx's own :data:`mmx.model.nets.ARCHITECTURES`, and the weights are read with
``torch.load(weights_only=True)``, which accepts tensors and plain containers only (a
pickle that would import or call anything is refused). Any other file in the folder
(an MLflow ``python_model``, a ``.py``) is never imported. The weights must match the
SHA-256 recorded in ``mmx_model.json`` (and in ``RELEASE.json`` for the shipped release
model) when one is recorded.

The same folder is what MLflow stores as the registered model's artifacts and what the
release file ships, so a model loads identically from a registry URI, a local folder or
the package itself, with no access to training checkpoints.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from mmx.classes import CLASSES, ContaminantClass
from mmx.errors import ModelError

if TYPE_CHECKING:  # torch stays off the import path
    import torch

__all__ = [
    "FORMAT_VERSION", "ModelMeta", "ModelPackage", "save_package", "load_package",
    "weights_sha256", "package_payload", "package_from_payload",
]

FORMAT_VERSION = 1
_META = "mmx_model.json"
_WEIGHTS = "weights.pt"


@dataclass
class ModelMeta:
    """Everything about a model except its weights.

    Attributes
    ----------
    architecture : str
        Name in :data:`mmx.model.nets.ARCHITECTURES`.
    arch_kwargs : dict
        Keyword arguments that rebuild the network.
    classes : list of str
        Abbreviations of the output planes, in order.
    training_priors : dict
        Priors P_N(c) the network's probabilities are calibrated to (what the training
        loss and crop sampling made of the training split's class fractions).
    normalization : dict
        Arguments of :func:`mmx.sky.normalize.normalize_image`.
    tile : int
        Tile side used at inference, pixels.
    margin : int
        Pixels discarded at each inner tile edge (covers the receptive field).
    thresholds : dict
        Probability thresholds calibrated on the validation split (F1-best at the class
        table's default priors, :mod:`mmx.training.calibration`); they replace the class table's
        MaxiMask thresholds as defaults for this model.
    tta_thresholds : dict
        Thresholds calibrated the same way with a test-time augmentation
        (:mod:`mmx.model.symmetry`), by mode: ``{"flips": {"CR": ...}, ...}``; a mode
        without them uses ``thresholds``.
    metrics, provenance, params : dict
        Test-set figures; git commit and data hash; training parameters.
    weights_sha256 : str
        SHA-256 of ``weights.pt``, written by :func:`save_package` and checked on load
        (empty in packages written before it was recorded: not checked).
    """

    architecture: str
    arch_kwargs: dict
    classes: list[str] = field(default_factory=lambda: [c.abbr for c in CLASSES])
    training_priors: dict[str, float] = field(default_factory=dict)
    normalization: dict = field(default_factory=dict)
    tile: int = 512
    margin: int = 32
    thresholds: dict[str, float] = field(default_factory=dict)
    tta_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""

    @property
    def class_objects(self) -> tuple[ContaminantClass, ...]:
        """The :class:`ContaminantClass` of each output plane."""
        from mmx.classes import by_abbr

        return tuple(by_abbr(a) for a in self.classes)


class ModelPackage:
    """A network in eval mode with its metadata; ``source`` says where it came from.

    Parameters
    ----------
    net : torch.nn.Module or None
        The network; or None with ``build`` given, which makes it on first access of
        :attr:`net` (a lazily loaded package: a run that never needs the PyTorch network,
        such as ONNX Runtime on a cached export, never imports torch).
    meta : ModelMeta
    source : str
        Where it came from (folder, registry URI).
    registry : dict
        name, version, alias, run_id when known.
    weights_sha256 : str
        Of the weights file it was loaded from, when known.
    build : callable, optional
        ``build() -> torch.nn.Module``, called once.
    """

    def __init__(self, net, meta: ModelMeta, source: str = "", registry: dict | None = None,
                 weights_sha256: str = "", *,
                 build: Callable[[], torch.nn.Module] | None = None) -> None:
        self._net, self._build = net, build
        self.meta = meta
        self.source = source
        self.registry = dict(registry or {})
        self.weights_sha256 = weights_sha256

    @property
    def net(self):
        """The network (built from the verified weights on first access when lazy)."""
        if self._net is None and self._build is not None:
            self._net, self._build = self._build(), None
        return self._net

    @property
    def net_built(self) -> bool:
        """False while a lazily loaded package has not yet made its network."""
        return self._net is not None or self._build is None

    def __repr__(self) -> str:
        return (f"ModelPackage(source={self.source!r}, architecture={self.meta.architecture!r}, "
                f"weights_sha256={self.weights_sha256[:12]!r}, built={self.net_built})")


def save_package(net, meta: ModelMeta, folder: str | Path) -> Path:
    """Write ``net``'s weights and ``meta`` into ``folder`` (replaced atomically)."""
    import torch

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, tmp / _WEIGHTS)
    record = asdict(meta) | {"weights_sha256": weights_sha256(tmp)}
    (tmp / _META).write_text(json.dumps(record, indent=2, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def _find_meta(folder: Path) -> Path:
    if (folder / _META).is_file():
        return folder
    found = sorted(folder.rglob(_META))
    if not found:
        raise ModelError(f"{folder}: not an mmx model folder (no {_META} inside)")
    return found[0].parent


def _read_meta(root: Path) -> ModelMeta:
    try:
        raw = json.loads((root / _META).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{root / _META}: cannot read model metadata ({exc}); expected the "
                         "JSON written by mmx; re-download or re-register the model") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{root / _META}: expected a JSON object, got {type(raw).__name__}")
    version = raw.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelError(f"{root / _META}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelError(f"{root}: model format {version} is newer than this "
                         f"mmx understands ({FORMAT_VERSION}); upgrade mmx")
    known = {f.name for f in fields(ModelMeta)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelError(f"{root / _META}: unknown key(s) {', '.join(unknown)}; expected only "
                         f"{', '.join(sorted(known))}")
    try:
        return ModelMeta(**raw)
    except TypeError as exc:
        raise ModelError(f"{root / _META}: incomplete model metadata ({exc})") from None


def _recorded_digests(root: Path, meta: ModelMeta) -> dict[str, str]:
    digests = {_META: meta.weights_sha256} if meta.weights_sha256 else {}
    release = root / "RELEASE.json"
    if release.is_file():
        try:
            digests["RELEASE.json"] = str(json.loads(release.read_text())["weights_sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{release}: cannot read the recorded weights hash ({exc})") from None
    return digests


def _build(meta: ModelMeta, state, where: str):
    from mmx.errors import ConfigError
    from mmx.model.nets import build_network

    try:
        net = build_network(meta.architecture, n_classes=len(meta.classes), **meta.arch_kwargs)
    except ConfigError as exc:
        raise ModelError(f"{where}: {exc}") from None
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(f"{where}: weights do not load into {meta.architecture} "
                         f"({reason})") from None
    net.eval()
    return net


def load_package(folder: str | Path, *, source: str = "", lazy: bool = False) -> ModelPackage:
    """Load a model folder written by :func:`save_package` (searched recursively).

    No code from the folder runs (see the module docstring). With ``lazy`` the weights
    are read and their SHA-256 checked now, but turned into a network (torch imported,
    :func:`_build`) only when :attr:`ModelPackage.net` is first used; the errors below that
    concern the weights' content are then raised there.

    Raises
    ------
    ModelError
        If the folder holds no model, its metadata is unreadable or its format newer than
        this mmx, the weights do not match their recorded SHA-256, are not a plain state
        dict, or do not fit the architecture.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    root = _find_meta(folder)
    meta = _read_meta(root)
    try:
        blob = (root / _WEIGHTS).read_bytes()
    except OSError as exc:
        raise ModelError(f"{root / _WEIGHTS}: cannot read the weights ({exc}); expected the "
                         "file written by mmx; re-download or re-register the model") from None
    digest = hashlib.sha256(blob).hexdigest()
    for where, recorded in _recorded_digests(root, meta).items():
        if recorded != digest:
            raise ModelError(f"{root / _WEIGHTS}: SHA-256 {digest[:16]}... does not match the "
                             f"{recorded[:16]}... recorded in {where}; the weights are damaged "
                             "or were replaced: re-download or re-register the model")

    def build():
        return _build(meta, _read_state(blob, root / _WEIGHTS), str(root))

    return ModelPackage(net=None if lazy else build(), meta=meta, source=source or str(root),
                        weights_sha256=digest, build=build if lazy else None)


def _read_state(blob: bytes, where: Path) -> dict:
    """The tensor state dict in a weights file's bytes (tensors only, never code)."""
    import torch

    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...
        reason = " ".join(str(exc).split())[:200]
        raise ModelError(f"{where}: not a plain tensor state dict ({type(exc).__name__}"
                         f": {reason}); mmx loads weights only, never code") from None
    if not isinstance(state, dict):
        raise ModelError(f"{where}: holds a {type(state).__name__}; expected a "
                         "state dict of tensors")
    return state


def package_payload(package: ModelPackage) -> dict:
    """A package as plain data (metadata, numpy weights) to send to another process.

    :func:`package_from_payload` rebuilds it; Dask workers receive models this way, so
    they never read a registry or a model folder.
    """
    state = {k: v.detach().cpu().numpy() for k, v in package.net.state_dict().items()}
    return {"meta": asdict(package.meta), "state": state, "source": package.source,
            "registry": dict(package.registry or {}),
            "weights_sha256": package.weights_sha256}


def package_from_payload(payload: dict) -> ModelPackage:
    """Rebuild a :class:`ModelPackage` from :func:`package_payload`'s output."""
    import torch

    meta = ModelMeta(**payload["meta"])
    state = {k: torch.from_numpy(v.copy()) for k, v in payload["state"].items()}
    net = _build(meta, state, payload.get("source") or meta.architecture)
    return ModelPackage(net=net, meta=meta, source=payload.get("source", ""),
                        registry=dict(payload.get("registry") or {}),
                        weights_sha256=payload.get("weights_sha256", ""))


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a model folder's ``weights.pt`` (identifies a model across stores)."""
    return hashlib.sha256((Path(folder) / _WEIGHTS).read_bytes()).hexdigest()
