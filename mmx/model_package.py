"""A trained model as a self-contained folder: weights plus everything inference needs.

``weights.pt``      the network's ``state_dict`` (no pickled code)
``mmx_model.json``  architecture name and arguments, the class table it was trained on,
                    its training priors P_N(c), normalisation, tile size and margin,
                    metrics and provenance (git commit, data hash, params)

The same folder is what MLflow stores as the registered model's artifacts and what the
release file ships, so a model loads identically from a registry URI, a local folder or
the package itself, with no access to training checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmx.classes import CLASSES, ContaminantClass
from mmx.errors import ModelError

__all__ = [
    "FORMAT_VERSION", "ModelMeta", "ModelPackage", "save_package", "load_package",
    "weights_sha256",
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
        Name in :data:`mmx.nets.ARCHITECTURES`.
    arch_kwargs : dict
        Keyword arguments that rebuild the network.
    classes : list of str
        Abbreviations of the output planes, in order.
    training_priors : dict
        Priors P_N(c) the network's probabilities are calibrated to (what the training
        loss and crop sampling made of the training split's class fractions).
    normalization : dict
        Arguments of :func:`mmx.normalize.normalize_image`.
    tile : int
        Tile side used at inference, pixels.
    margin : int
        Pixels discarded at each inner tile edge (covers the receptive field).
    thresholds : dict
        Probability thresholds calibrated on the validation split (F1-best at the class
        table's default priors, :mod:`mmx.calibration`); they replace the class table's
        MaxiMask thresholds as defaults for this model.
    metrics, provenance, params : dict
        Test-set figures; git commit and data hash; training parameters.
    """

    architecture: str
    arch_kwargs: dict
    classes: list[str] = field(default_factory=lambda: [c.abbr for c in CLASSES])
    training_priors: dict[str, float] = field(default_factory=dict)
    normalization: dict = field(default_factory=dict)
    tile: int = 512
    margin: int = 32
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def class_objects(self) -> tuple[ContaminantClass, ...]:
        """The :class:`ContaminantClass` of each output plane."""
        from mmx.classes import by_abbr

        return tuple(by_abbr(a) for a in self.classes)


@dataclass
class ModelPackage:
    """A network in eval mode with its metadata; ``source`` says where it came from."""

    net: object  # torch.nn.Module; typed loosely to keep torch off the import path
    meta: ModelMeta
    source: str = ""
    registry: dict = field(default_factory=dict)  # name, version, alias, run_id when known


def save_package(net, meta: ModelMeta, folder: str | Path) -> Path:
    """Write ``net``'s weights and ``meta`` into ``folder`` (replaced atomically)."""
    import torch

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, tmp / _WEIGHTS)
    (tmp / _META).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True))
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


def load_package(folder: str | Path, *, source: str = "") -> ModelPackage:
    """Load a model folder written by :func:`save_package` (searched recursively).

    Raises
    ------
    ModelError
        If the folder holds no model, its format is newer than this mmx, or the weights
        do not fit the architecture.
    """
    import torch

    from mmx.nets import build_network

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    root = _find_meta(folder)
    raw = json.loads((root / _META).read_text())
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{root}: model format {raw['format_version']} is newer than this "
                         f"mmx understands ({FORMAT_VERSION}); upgrade mmx")
    meta = ModelMeta(**raw)
    net = build_network(meta.architecture, n_classes=len(meta.classes), **meta.arch_kwargs)
    try:
        state = torch.load(root / _WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"{root}: weights do not load into {meta.architecture} ({exc})") from None
    net.eval()
    return ModelPackage(net=net, meta=meta, source=source or str(root))


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a model folder's ``weights.pt`` (identifies a model across stores)."""
    import hashlib

    return hashlib.sha256((Path(folder) / _WEIGHTS).read_bytes()).hexdigest()
