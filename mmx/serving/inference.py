"""Running a model over whole images: normalise, tile, batch, correct priors, stream out.

:class:`Predictor` wraps a :class:`mmx.model.package.ModelPackage` once (folding BatchNorm
into the convolutions, channels-last weights, thread count, optional bfloat16) and then
masks any number of images. For each image it

1. notes the pixels with no valid value (NaN/Inf/BLANK) and normalises the image with the
   model's own settings (:func:`mmx.sky.normalize.normalize_image`, which sets them to sky);
2. plans seamless tiles (:func:`mmx.serving.tiling.plan_tiles`: each pixel computed once, at least
   ``margin`` from any inner tile edge; at the image border the network sees what it saw at
   the edge of its training crops, ``padding="none"``, or a mirror or sky padding);
3. runs the tiles in batches through the runtime (numpy in, numpy out), keeps only the
   requested class planes, adds the prior-correction shift to their logits
   (:mod:`mmx.model.priors`) and hands each tile's core to a :class:`mmx.serving.masks.MaskWriter`,
   which converts it at once into the output type: no full-size plane of an unrequested
   class, and for the bit mask no float plane at all, is ever held.

Arithmetic: the network runs in one of the paths of :mod:`mmx.serving.runtimes` (PyTorch float32
or bfloat16, ONNX Runtime float32 or int8), chosen per machine by
:func:`mmx.serving.runtimes.choose_path` unless forced (``runtime=``, ``precision=``, or
``$MMX_RUNTIME`` for ``mmx predict``); ``benchmarks/README.md`` has the figures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmx.classes import ContaminantClass, by_abbr
from mmx.errors import ConfigError, ModelError
from mmx.model.priors import resolve_priors
from mmx.model.symmetry import SymmetryAveraged, check_tta
from mmx.serving.masks import MaskWriter, OutputMode, make_writer
from mmx.serving.runtimes import PRECISIONS, RUNTIMES, bf16_supported, fold_batchnorm
from mmx.serving.tiling import PAD_MODES, TilePlan, iter_batches, pad_image, plan_tiles
from mmx.sky.normalize import normalize_image

__all__ = ["PRECISIONS", "RUNTIMES", "Predictor", "fold_batchnorm", "bf16_supported"]

log = logging.getLogger(__name__)

@dataclass
class _Settings:
    tile: int
    margin: int
    align: int
    batch_size: int
    precision: str
    runtime: str
    channels_last: bool
    threads: int | None
    device: str = "cpu"
    padding: str = "none"
    tta: str = "none"


class Predictor:
    """Masks images with one model.

    Parameters
    ----------
    package : ModelPackage
        The model: ``net`` (eval mode) and ``meta``.
    classes : sequence of str, optional
        Abbreviations of the classes to output (default: every class of the model), in the
        model's plane order.
    priors : mapping, optional
        Expected proportions ``P(c)`` overriding the class table's defaults.
    apply_priors : bool
        Apply the prior correction (default). False outputs the network's own posteriors.
    batch_size : int
        Tiles per forward pass.
    threads : int, optional
        Intra-op threads of the runtime (for PyTorch ``torch.set_num_threads``,
        process-wide); default the library's own choice (the physical cores).
    tile, margin : int, optional
        Largest tile side and margin, pixels (default: the model's ``meta.tile``, at most
        the runtime's ``max_tile`` where it has one (ONNX Runtime: memory), and
        ``meta.margin``). The margin must cover the network's receptive field
        (:func:`mmx.model.nets.receptive_field_margin`).
    precision : {"auto", "float32", "bfloat16", "int8"}
        Arithmetic of the network. ``"auto"`` picks the fastest agreeing path on this CPU
        (:func:`mmx.serving.runtimes.choose_path`); ``"float32"`` alone is the PyTorch reference.
    runtime : {"auto", "torch", "onnxruntime"}, optional
        Library that runs the network; default ``$MMX_RUNTIME``, else ``"auto"``.
    channels_last : bool
        Use the channels-last memory layout (PyTorch; faster with oneDNN on x86).
    fold_bn : bool
        Fold BatchNorm layers into the preceding convolutions (:func:`fold_batchnorm`).
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the network runs (:func:`mmx.serving.runtimes.resolve_device`); ``auto`` is the GPU
        when torch sees one. On a GPU only PyTorch runs, in bfloat16 where it has it.
    padding : {"none", "reflect", "zero"}
        The image border (:mod:`mmx.serving.tiling`): nothing beyond it, as at the edge of
        every training crop (default), the image mirrored, or noiseless sky. On held-out
        real frames ``"none"`` scored best on every criterion class (``benchmarks/README.md``).
    tta : {"none", "flips", "dihedral"}
        Test-time augmentation (:mod:`mmx.model.symmetry`): the logits averaged over the
        image's 4 flips or 8 rotations and reflections, at 4 or 8 times the network's time.

    Raises
    ------
    ConfigError
        On a class the model does not output, a bad prior, batch size, precision,
        padding or tta, or a device that does not exist here (CUDA with a CPU build of torch).
    """

    def __init__(
        self,
        package,
        *,
        classes: Sequence[str] | None = None,
        priors: Mapping[str, float] | None = None,
        apply_priors: bool = True,
        batch_size: int = 1,
        threads: int | None = None,
        tile: int | None = None,
        margin: int | None = None,
        precision: str = "auto",
        runtime: str | None = None,
        channels_last: bool = True,
        fold_bn: bool = True,
        device: str = "cpu",
        padding: str = "none",
        tta: str = "none",
    ) -> None:
        if padding not in PAD_MODES:
            raise ConfigError(f"padding must be one of {', '.join(PAD_MODES)}, got {padding!r}")
        check_tta(tta)
        self.package = package
        meta = package.meta
        model_classes = list(meta.classes)
        if classes is None:
            wanted = model_classes
        else:
            wanted = [by_abbr(a).abbr for a in classes]
            missing = [a for a in wanted if a not in model_classes]
            if missing:
                raise ConfigError(f"class(es) {', '.join(missing)} not output by model "
                                  f"{package.source or meta.architecture}; it outputs "
                                  f"{', '.join(model_classes)}")
            wanted = [a for a in model_classes if a in set(wanted)]
        if not wanted:
            raise ConfigError("no output class selected; expected at least one class")
        self.classes: tuple[ContaminantClass, ...] = tuple(by_abbr(a) for a in wanted)
        self._plane_index = [model_classes.index(a) for a in wanted]
        self._all_planes = self._plane_index == list(range(len(model_classes)))
        self.training_priors, self.priors, shift = resolve_priors(
            wanted, meta.training_priors, priors=priors, apply=apply_priors)
        self.apply_priors = bool(apply_priors)
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        from mmx.serving.runtimes import choose_path, make_runtime, resolve_device

        device = resolve_device(device)
        env = os.environ.get("MMX_RUNTIME") if runtime is None else None
        chosen_by_auto = (runtime or env or "auto") == "auto" and precision == "auto"
        try:
            runtime, precision = choose_path(runtime or env or "auto", precision,
                                             device=device)
        except ConfigError as exc:
            raise ConfigError(f"$MMX_RUNTIME: {exc}" if env else str(exc)) from None
        tile_given, tile = tile, int(tile if tile is not None else meta.tile)
        margin = int(margin if margin is not None else meta.margin)
        if tile < 1 or margin < 0:
            raise ConfigError(f"tile must be >= 1 and margin >= 0, got tile={tile}, "
                              f"margin={margin}")
        self._shift = np.asarray(shift, dtype=np.float32).reshape(-1, 1, 1)
        self._index = np.asarray(self._plane_index, dtype=np.intp)
        try:
            self.runtime = make_runtime(package, runtime=runtime, precision=precision,
                                        threads=threads, channels_last=channels_last,
                                        fold_bn=fold_bn, device=device)
        except ModelError as exc:
            if not chosen_by_auto or runtime == "torch":
                raise ModelError(f"model {package.source or meta.architecture!r}: {exc}") from None
            log.warning("%s; using torch/float32 instead", exc)
            runtime, precision = "torch", "float32"
            self.runtime = make_runtime(package, runtime=runtime, precision=precision,
                                        threads=threads, channels_last=channels_last,
                                        fold_bn=fold_bn)
        self.settings = _Settings(tile=tile, margin=margin, align=self.runtime.stride,
                                  batch_size=int(batch_size), precision=precision,
                                  runtime=runtime, channels_last=bool(channels_last),
                                  threads=threads, device=device, padding=padding, tta=tta)
        if tta != "none":
            self.runtime = SymmetryAveraged(self.runtime, tta)
        cap = getattr(self.runtime, "max_tile", None)
        if tile_given is None and cap is not None and self.settings.tile > cap:
            self.settings.tile = int(cap)  # a memory-bound path (plan_tiles aligns cores)
        log.debug("network path: %s", self.runtime.name)

    def plan(self, shape: tuple[int, int]) -> TilePlan:
        """The tile plan used for an image of ``shape``."""
        s = self.settings
        return plan_tiles(shape, tile=s.tile, margin=s.margin, align=s.align, padding=s.padding)

    def predict(
        self,
        image: np.ndarray,
        *,
        mode: OutputMode | str = OutputMode.BITMASK,
        thresholds: Mapping[str, float] | None = None,
        progress=None,
        clean_classes: Sequence[str] = (),
    ) -> MaskWriter:
        """Mask one image.

        Parameters
        ----------
        image : numpy.ndarray
            2-D image in any units (NaN/Inf = no data).
        mode : OutputMode or str
            Output mode (:mod:`mmx.serving.masks`).
        thresholds : mapping, optional
            Probability thresholds overriding the class table's, for binary outputs.
        progress : object, optional
            Something with ``update(n)`` (a tqdm bar), told of every finished tile.
        clean_classes : sequence of str
            Classes a cleaned image will replace: the writer also keeps their cleaning
            candidates (:func:`mmx.serving.inpaint.clean_mask`).

        Returns
        -------
        MaskWriter
            Holds the output in ``.array``.
        """
        image = np.asarray(image)
        if image.ndim != 2 or image.size == 0:
            raise ConfigError(f"expected a non-empty 2-D image, got shape {image.shape}")
        from mmx.serving.inpaint import CLEAN_FRACTION

        writer = make_writer(mode, image.shape, self.classes,
                             thresholds=self.default_thresholds() | dict(thresholds or {}),
                             candidate_classes=clean_classes, candidate_fraction=CLEAN_FRACTION)
        bad = ~np.isfinite(image)
        norm = normalize_image(image, **self.package.meta.normalization)
        plan = self.plan(image.shape)
        padded = pad_image(norm, plan)
        del norm
        s = self.settings
        th, tw = plan.tile_shape
        for batch in iter_batches(plan, s.batch_size):
            x = np.stack([padded[t.y:t.y + th, t.x:t.x + tw] for t in batch])[:, None]
            logits = self.runtime(x)
            if not self._all_planes:
                logits = logits[:, self._index]
            if self.apply_priors:
                logits += self._shift  # the runtime's fresh array of this batch
            for k, t in enumerate(batch):
                writer.write(logits[k][:, t.inner[0], t.inner[1]], t.out[0], t.out[1])
            if progress is not None:
                progress.update(len(batch))
        writer.flag_nodata(bad)
        return writer

    def default_thresholds(self) -> dict[str, float]:
        """The model's calibrated thresholds for the output classes (class table's if none).

        They were calibrated at the class table's default priors; without prior correction
        (``apply_priors=False``) they are moved to the raw posteriors, so the operating
        point stays the same. With other priors, it moves as the priors say. With
        test-time augmentation they are the ones calibrated with it, where the model has them.
        """
        from mmx.model.thresholds import default_thresholds

        abbrs = [c.abbr for c in self.classes]
        raw = not self.apply_priors and bool(self.package.meta.thresholds)
        thr = default_thresholds(self.package.meta, abbrs, raw=raw, tta=self.settings.tta)
        return {a: float(t) for a, t in zip(abbrs, thr, strict=True)}

    def provenance(self) -> dict:
        """What produced a mask: model identity, priors, settings (for FITS headers)."""
        pkg = self.package
        reg = dict(pkg.registry or {})
        return {
            "model_name": str(reg.get("name", "")),
            "model_version": str(reg.get("version", "")),
            "model_alias": str(reg.get("alias", "")),
            "run_id": str(reg.get("run_id", "")),
            "source": str(pkg.source or ""),
            "architecture": pkg.meta.architecture,
            "apply_priors": self.apply_priors,
            "training_priors": dict(self.training_priors),
            "priors": dict(self.priors),
            "tile": self.settings.tile,
            "margin": self.settings.margin,
            "precision": self.settings.precision,
            "runtime": self.settings.runtime,
            "device": self.settings.device,
            "padding": self.settings.padding,
            "tta": self.settings.tta,
        }
