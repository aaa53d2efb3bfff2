"""Training data: clean cutouts plus injected contaminants with exact per-pixel truth.

For each clean cutout and each variant, a random subset of the injectable classes is
drawn (each with its own ``probability``) and their injectors run in a physical order:
sky-like light first (nebulosity, fringes, persistence), then bright stars with spikes
and saturated stars, trails, cosmic rays and hot defects, then the full-well pass
(:func:`mmx.synthesis.contaminants.saturate`: anything now above the record's ``saturate``
bleeds and is labelled SAT), then the low-response defects and the overscan strip,
which replace what was there. Finally BG and BBG are relabelled on the new image with
the clean stage's rule (:func:`mmx.sky.background.label_background`), never on a pixel
that carries a contaminant.

Cutouts are split into train/validation/test by *field* (``record["field"]`` if the
clean stage provides it, else the instrument and exposure), so no test image shares a
pointing with a training image; with too few fields the split falls back to CCDs,
then to cutouts (with a warning). Each split has its own random stream; each image's
stream is derived from ``(seed, split, cutout, variant)`` alone, and each injector's
from that, so results do not depend on processing order, and turning one class off
does not change the draws of the others.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from mmx.classes import ABBREVIATIONS, CLASSES, N_CLASSES, by_abbr, label_bit
from mmx.errors import ConfigError, InputError
from mmx.io.config import from_section
from mmx.io.shards import Sample, ShardWriter, class_pixel_counts
from mmx.sky.background import label_background
from mmx.synthesis.contaminants import (
    Injection,
    inject_cosmic_rays,
    inject_dead_columns,
    inject_dead_pixels,
    inject_fringes,
    inject_hot_columns,
    inject_hot_pixels,
    inject_nebulosity,
    inject_overscan,
    inject_persistence,
    inject_saturated_stars,
    inject_spikes,
    inject_trails,
    saturate,
)

__all__ = [
    "INJECTORS",
    "SPLITS",
    "SynthesisConfig",
    "split_by_field",
    "synthesize_sample",
    "variants_per_cutout",
    "synthesize",
    "demo_clean_samples",
    "save_preview",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Injectors in the order they are applied; the full-well pass runs between the two groups.
INJECTORS: dict[str, Callable[..., Injection]] = {
    "NEB": inject_nebulosity,
    "FR": inject_fringes,
    "P": inject_persistence,
    "SP": inject_spikes,
    "SAT": inject_saturated_stars,
    "TRL": inject_trails,
    "CR": inject_cosmic_rays,
    "HCL": inject_hot_columns,
    "HP": inject_hot_pixels,
    "DCL": inject_dead_columns,
    "DP": inject_dead_pixels,
    "OV": inject_overscan,
}
_AFTER_SATURATION = ("DCL", "DP", "OV")
_BG, _BBG = label_bit("BG"), label_bit("BBG")


@dataclass
class SynthesisConfig:
    """Every setting of the synthesize stage (the ``synthesize:`` section of params.yaml).

    Attributes
    ----------
    seed : int
        Master seed; each split, cutout and variant derives its own stream from it.
    split_fractions : dict
        Fraction of fields for ``train``, ``val`` and ``test`` (normalised).
    variants : dict
        Synthesized images per clean cutout, per split.
    clean_probability : float
        Probability that an image gets no injected contaminant at all.
    real_fraction : float
        Share of each split's images drawn on real skies (clean cutouts whose record has
        ``origin: real``), when the split has both real and simulated cutouts; reached by
        giving each real cutout more variants (:func:`variants_per_cutout`).
    contaminants : dict
        Per class abbreviation: ``probability`` (that an image gets it) and the
        keyword arguments of its injector (parameter ranges).
    saturation : dict
        ``bleed_probability`` and ``asymmetry`` of the final full-well pass.
    background : dict
        Keyword arguments of :func:`mmx.sky.background.label_background`.
    shard_size : int
        Images per shard file.
    """

    seed: int = 2020
    split_fractions: dict = field(default_factory=lambda: {"train": 0.7, "val": 0.15,
                                                           "test": 0.15})
    variants: dict = field(default_factory=lambda: {"train": 2, "val": 1, "test": 1})
    clean_probability: float = 0.05
    real_fraction: float = 0.0
    contaminants: dict = field(default_factory=dict)
    saturation: dict = field(default_factory=lambda: {"bleed_probability": 0.85,
                                                      "asymmetry": [0.3, 0.7]})
    background: dict = field(default_factory=dict)
    shard_size: int = 64

    def __post_init__(self) -> None:
        for name in ("split_fractions", "variants"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or set(value) != set(SPLITS):
                raise ConfigError(f"synthesize.{name} must map each of {', '.join(SPLITS)} "
                                  f"to a number, got {value!r}")
        if any(float(v) < 0 for v in self.split_fractions.values()) or not sum(
                float(v) for v in self.split_fractions.values()) > 0:
            raise ConfigError("synthesize.split_fractions must be >= 0 with a positive sum, "
                              f"got {self.split_fractions}")
        for split, n in self.variants.items():
            if int(n) != n or int(n) < 0:
                raise ConfigError(f"synthesize.variants.{split} must be a whole number >= 0, "
                                  f"got {n!r}")
        if not 0.0 <= float(self.clean_probability) <= 1.0:
            raise ConfigError("synthesize.clean_probability must be in [0, 1], "
                              f"got {self.clean_probability}")
        if not 0.0 <= float(self.real_fraction) < 1.0:
            raise ConfigError("synthesize.real_fraction must be in [0, 1), "
                              f"got {self.real_fraction}")
        if int(self.shard_size) < 1:
            raise ConfigError(f"synthesize.shard_size must be >= 1, got {self.shard_size}")
        for abbr, settings in self.contaminants.items():
            if abbr not in INJECTORS:
                raise ConfigError(f"synthesize.contaminants: {abbr!r} has no injector; "
                                  f"expected some of {', '.join(INJECTORS)}")
            settings = dict(settings or {})
            p = settings.pop("probability", 0.0)
            if not 0.0 <= float(p) <= 1.0:
                raise ConfigError(f"synthesize.contaminants.{abbr}.probability must be in "
                                  f"[0, 1], got {p}")
            _check_kwargs(INJECTORS[abbr], settings, f"synthesize.contaminants.{abbr}")
        _check_kwargs(saturate, dict(self.saturation), "synthesize.saturation",
                      allowed_extra=("bleed_probability",))
        _check_kwargs(label_background, dict(self.background), "synthesize.background")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> SynthesisConfig:
        """Build from the params section; unknown keys are an error.

        Raises
        ------
        ConfigError
            On an unknown key or an invalid value.
        """
        return from_section(cls, values, "synthesize")

    def probability(self, abbr: str) -> float:
        """Probability that an image gets class ``abbr`` injected."""
        return float(dict(self.contaminants.get(abbr) or {}).get("probability", 0.0))

    def kwargs(self, abbr: str) -> dict:
        """Keyword arguments of the injector of ``abbr``."""
        settings = dict(self.contaminants.get(abbr) or {})
        settings.pop("probability", None)
        return settings


def _check_kwargs(func: Callable, kwargs: dict, where: str, *,
                  allowed_extra: Sequence[str] = ()) -> None:
    params = inspect.signature(func).parameters
    allowed = {k for k, p in params.items() if p.kind is p.KEYWORD_ONLY} - {"record", "rng"}
    allowed |= set(allowed_extra)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; expected some "
                          f"of {', '.join(sorted(allowed))}")


def _apply(inj: Injection, image: np.ndarray, labels: np.ndarray, ignore: np.ndarray
           ) -> np.ndarray:
    bit = np.uint16(label_bit(inj.abbr))
    if inj.replaces:
        labels[inj.truth] = bit
        ignore[inj.truth] = 0
    else:
        labels[inj.truth] |= bit
    return inj.image


def synthesize_sample(
    sample: Sample,
    *,
    rng: np.random.Generator,
    config: SynthesisConfig,
    classes: Sequence[str] | None = None,
) -> Sample:
    """Inject a random subset of contaminants into one clean cutout.

    Parameters
    ----------
    sample : Sample
        A clean cutout (``image`` [ADU], ``labels`` with inherent SAT/BG/BBG, ``ignore``,
        ``record`` with ``saturate``, ``sky_noise``, ``fwhm``...); not modified.
    rng : numpy.random.Generator
        This image's stream; one child per injector is spawned from it.
    config : SynthesisConfig
        Probabilities and parameter ranges.
    classes : sequence of str, optional
        Inject exactly these classes instead of drawing them.

    Returns
    -------
    Sample
        The new image, truth, ignore plane, and the record extended with ``injected``
        (classes) and ``injections`` (what each injector drew).

    Raises
    ------
    InputError
        If the record lacks the ``saturate`` level.
    """
    record = dict(sample.record)
    if not float(record.get("saturate") or 0) > 0:
        raise InputError(f"record of cutout {record.get('exposure')}/{record.get('ccd')} has "
                         f"no positive 'saturate' level, got {record.get('saturate')!r}")
    choose_rng, sat_rng, *streams = rng.spawn(2 + len(INJECTORS))
    if classes is None:
        if choose_rng.uniform() < config.clean_probability:
            chosen: list[str] = []
        else:
            draws = choose_rng.uniform(size=len(INJECTORS))
            chosen = [a for a, u in zip(INJECTORS, draws, strict=True)
                      if u < config.probability(a)]
    else:
        wanted = {by_abbr(a).abbr for a in classes}
        for abbr in sorted(wanted - set(INJECTORS)):
            raise ConfigError(f"class {abbr} cannot be injected; expected some of "
                              f"{', '.join(INJECTORS)}")
        chosen = [a for a in INJECTORS if a in wanted]
    image = np.array(sample.image, dtype=np.float32)
    labels = np.array(sample.labels, dtype=np.uint16)
    ignore = np.array(sample.ignore, dtype=np.uint8)
    infos: dict[str, dict] = {}
    saturated = False
    for (abbr, inject), stream in zip(INJECTORS.items(), streams, strict=True):
        if abbr in _AFTER_SATURATION and not saturated:
            sat_kw = dict(config.saturation)
            bleed = sat_rng.uniform() < float(sat_kw.pop("bleed_probability", 0.85))
            sat = saturate(image, level=float(record["saturate"]), rng=sat_rng, bleed=bleed,
                           **sat_kw)
            image = _apply(sat, image, labels, ignore)
            saturated = True
        if abbr in chosen:
            inj = inject(image, record=record, rng=stream, **config.kwargs(abbr))
            image = _apply(inj, image, labels, ignore)
            infos[abbr] = inj.info or {}
    labels &= np.uint16(~(_BG | _BBG) & 0xFFFF)
    bbg, bg = label_background(image, contaminants=labels != 0, ignore=ignore != 0,
                               **config.background)
    labels[bbg] |= np.uint16(_BBG)
    labels[bg & (labels == 0)] |= np.uint16(_BG)
    record["injected"] = chosen
    record["injections"] = infos
    return Sample(image=image, labels=labels, ignore=ignore, record=record)


def split_by_field(records: Sequence[Mapping], *, fractions: Mapping[str, float],
                   rng: np.random.Generator) -> dict[str, list[int]]:
    """Assign cutouts to train/val/test, per instrument, sharing as little sky as possible.

    Every instrument contributes to every split. Within an instrument, whole fields
    (pointings) go to one split when there are at least as many fields as splits; else
    whole CCDs; else the instrument's cutouts, ordered by field, CCD and position, are cut
    into contiguous blocks, so test regions are spatially apart from training regions.

    Parameters
    ----------
    records : sequence of dict
        Clean records (``instrument``; ``field`` or ``exposure``; ``ccd``; ``y0``, ``x0``).
    fractions : dict
        Target fraction of cutouts per split.
    rng : numpy.random.Generator
        Shuffles the fields or CCDs.

    Returns
    -------
    dict
        Cutout indices per split (sorted).
    """
    wanted = [s for s in SPLITS if float(fractions[s]) > 0]
    total = sum(float(fractions[s]) for s in wanted)
    share = {s: float(fractions[s]) / total for s in wanted}
    by_instrument: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        by_instrument.setdefault(str(rec.get("instrument")), []).append(i)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for instrument in sorted(by_instrument):
        members = by_instrument[instrument]
        for split, local in _split_instrument([records[i] for i in members], wanted, share,
                                              rng, instrument).items():
            out[split].extend(members[j] for j in local)
    return {s: sorted(v) for s, v in out.items()}


def _field(rec: Mapping) -> object:
    return rec.get("field") or rec.get("exposure")


def _split_instrument(records, wanted, share, rng, instrument) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {s: [] for s in wanted}
    for key in (lambda r: _field(r), lambda r: (_field(r), r.get("ccd"))):
        groups: dict[object, list[int]] = {}
        for i, rec in enumerate(records):
            groups.setdefault(key(rec), []).append(i)
        if len(groups) >= len(wanted):
            order = sorted(groups, key=repr)
            order = [order[i] for i in rng.permutation(len(order))]
            target = {s: share[s] * len(records) for s in wanted}
            # the smallest splits first get one group each, then groups go where most is missing
            for n, g in enumerate(order):
                split = (sorted(wanted, key=lambda s: target[s])[n] if n < len(wanted)
                         else max(wanted, key=lambda s: target[s] - len(out[s])))
                out[split].extend(groups[g])
            return out
    log.warning("%s: fewer fields and CCDs than splits; splitting its cutouts into contiguous "
                "blocks (test regions share a CCD, not pixels, with training)", instrument)
    order = sorted(range(len(records)), key=lambda i: (repr(_field(records[i])),
                   repr(records[i].get("ccd")), records[i].get("y0", 0), records[i].get("x0", 0)))
    cuts = np.round(np.cumsum([share[s] for s in wanted]) * len(order)).astype(int)
    start = 0
    for split, stop in zip(wanted, cuts, strict=True):
        out[split] = order[start:stop]
        start = stop
    return out


_COLOURS = {  # truth colours of the preview; white = no class (object cores)
    "CR": (0.90, 0.10, 0.10), "HCL": (1.00, 0.55, 0.00), "DCL": (0.55, 0.25, 0.85),
    "HP": (1.00, 0.90, 0.00), "DP": (0.00, 0.60, 1.00), "P": (0.60, 0.60, 0.10),
    "TRL": (0.15, 0.35, 0.95), "FR": (0.00, 0.75, 0.70), "NEB": (0.15, 0.70, 0.15),
    "SAT": (1.00, 0.00, 1.00), "SP": (1.00, 0.60, 0.75), "OV": (0.55, 0.30, 0.20),
    "BBG": (0.45, 0.45, 0.45), "BG": (0.10, 0.10, 0.10),
}


def _class_colours() -> np.ndarray:
    return np.array([_COLOURS[c.abbr] for c in CLASSES])


def _truth_rgb(labels: np.ndarray) -> np.ndarray:
    colours = _class_colours()
    rgb = np.ones(labels.shape + (3,))
    # common classes first, so rarer ones are drawn on top
    for cls in sorted(CLASSES, key=lambda c: -c.maximask_prior):
        rgb[(labels & (1 << cls.index)) != 0] = colours[cls.index]
    return rgb


def save_preview(examples: Mapping[str, Sample], path: str | Path, *, zoom: int = 64) -> Path:
    """Write a PNG: per class, an example image, its truth, and a zoom on the class.

    Parameters
    ----------
    examples : dict
        Class abbreviation -> a synthesized sample showing it.
    path : str or Path
        PNG file to write.
    zoom : int
        Side of the zoomed crop [px].

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mmx.io.display import asinh_stretch, save_png

    items = list(examples.items())
    ncol = 2
    nrow = max(1, (len(items) + ncol - 1) // ncol)
    fig, axes = plt.subplots(nrow, 4 * ncol, figsize=(4 * ncol * 2.0, nrow * 2.15),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (abbr, s) in enumerate(items):
        row, col = divmod(k, ncol)
        bit = 1 << by_abbr(abbr).index
        comp, n = ndimage.label((s.labels & bit) != 0, structure=np.ones((3, 3)))
        if n:
            biggest = int(np.argmax(np.bincount(comp.ravel())[1:])) + 1
            ys, xs = np.nonzero(comp == biggest)
            j = int(np.argmin(np.hypot(ys - ys.mean(), xs - xs.mean())))
            cy, cx = int(ys[j]), int(xs[j])
        else:
            cy, cx = s.image.shape[0] // 2, s.image.shape[1] // 2
        h = zoom // 2
        y0 = int(np.clip(cy - h, 0, max(s.image.shape[0] - zoom, 0)))
        x0 = int(np.clip(cx - h, 0, max(s.image.shape[1] - zoom, 0)))
        crop = np.s_[y0:y0 + zoom, x0:x0 + zoom]
        rgb = _truth_rgb(s.labels)
        shown = asinh_stretch(s.image)
        panels = [(shown, "gray"), (rgb, None), (shown[crop], "gray"), (rgb[crop], None)]
        for i, (data, cmap) in enumerate(panels):
            ax = axes[row, 4 * col + i]
            ax.imshow(data, cmap=cmap, origin="lower", interpolation="nearest", vmin=0, vmax=1)
        axes[row, 4 * col].set_title(f"{abbr}: " + "+".join(s.record.get("injected", [])),
                                     fontsize=7, loc="left")
        axes[row, 4 * col + 2].set_title(f"zoom {zoom}px", fontsize=7, loc="left")
        axes[row, 4 * col].add_patch(plt.Rectangle((x0, y0), zoom, zoom, fill=False,
                                                   color="yellow", lw=0.6))
    colours = _class_colours()
    handles = [Patch(color=colours[c.index], label=c.abbr) for c in CLASSES]
    handles.append(Patch(facecolor="white", edgecolor="black", label="no class (object core)"))
    fig.subplots_adjust(wspace=0.04, hspace=0.18, top=0.95, bottom=0.05, left=0.01,
                        right=0.99)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("mmx synthesis, one training example per class: image (asinh) | truth | "
                 "zoom (yellow box) | zoom truth", fontsize=9)
    return save_png(fig, path, dpi=80)


def _keep_example(examples: dict, sample: Sample) -> None:
    """Remember, per class, the image that shows it best: fewest other classes, most pixels."""
    injected = sample.record["injected"]
    for abbr in [*injected, "BBG", "BG"]:
        count = int(np.count_nonzero(sample.labels & (1 << by_abbr(abbr).index)))
        if not count:
            continue
        score = (len(injected), -count)
        if abbr not in examples or score < examples[abbr][0]:
            examples[abbr] = (score, sample)


def variants_per_cutout(records: Sequence[Mapping], indices: Sequence[int], *, base: int,
                        real_fraction: float) -> dict[int, int]:
    """Images to synthesize from each clean cutout of one split.

    Simulated cutouts get ``base`` each. Real ones (``origin: real``) get as many as make
    them ``real_fraction`` of the split's images (at least one each); with no simulated
    or no real cutout, or ``real_fraction`` 0, every cutout gets ``base``.
    """
    real = [i for i in indices if records[i].get("origin") == "real"]
    n_sim = len(indices) - len(real)
    n_real = base
    if real and n_sim and real_fraction > 0 and base > 0:
        n_real = max(1, round(real_fraction / (1.0 - real_fraction) * base * n_sim / len(real)))
    return {i: (n_real if records[i].get("origin") == "real" else base) for i in indices}


def _image_rng(seed: int, split: int, index: int, variant: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), split, index, variant]))


def synthesize(
    clean: Sequence[Sample],
    *,
    out: Mapping[str, str | Path],
    config: SynthesisConfig,
    report: str | Path | None = None,
    preview: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Write the train/val/test shard sets from a clean set.

    Parameters
    ----------
    clean : sequence of Sample
        The clean cutouts (e.g. a :class:`mmx.io.shards.ShardSet`).
    out : dict
        Folder of each split's shard set.
    config : SynthesisConfig
        Settings.
    report : str or Path, optional
        Where to write the JSON report (counts per class per split, images, seconds).
    preview : str or Path, optional
        Where to write the preview PNG (one example per class, from the train split).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        The report.

    Raises
    ------
    InputError
        If the clean set is empty or a record lacks what synthesis needs.
    """
    if len(clean) == 0:
        raise InputError("the clean set is empty: nothing to synthesize (run the clean stage)")
    missing = sorted(set(SPLITS) - set(out))
    if missing:
        raise ConfigError(f"no output folder for split(s) {', '.join(missing)}")
    start = time.perf_counter()
    records = [clean[i].record for i in range(len(clean))]
    split_rng = np.random.default_rng(np.random.SeedSequence([int(config.seed), 999]))
    assignment = split_by_field(records, fractions=config.split_fractions, rng=split_rng)
    result: dict = {"seed": int(config.seed), "splits": {}}
    examples: dict[str, tuple[tuple, Sample]] = {}
    variants = {s: variants_per_cutout(records, assignment[s], base=int(config.variants[s]),
                                       real_fraction=float(config.real_fraction))
                for s in SPLITS}
    total = sum(sum(v.values()) for v in variants.values())
    bar = tqdm(total=total, desc="synthesize", unit="img", disable=not progress)
    for s_index, split in enumerate(SPLITS):
        images_with = np.zeros(N_CLASSES, dtype=np.int64)
        fields = sorted({str((r.get("instrument"), r.get("field") or r.get("exposure")))
                         for r in (records[i] for i in assignment[split])})
        writer = ShardWriter(out[split], shard_size=int(config.shard_size))
        try:
            for index in assignment[split]:
                base = clean[index]
                for variant in range(variants[split][index]):
                    rng = _image_rng(config.seed, s_index, index, variant)
                    sample = synthesize_sample(base, rng=rng, config=config)
                    sample.record.update(split=split, clean_index=int(index), variant=variant)
                    writer.add(sample)
                    present = class_pixel_counts(sample.labels, sample.ignore) > 0
                    images_with += present
                    if split == "train":
                        _keep_example(examples, sample)
                    bar.update()
        except BaseException:
            shutil.rmtree(writer.tmp, ignore_errors=True)
            raise
        summary = writer.close(seed=int(config.seed), split=split, fields=fields)
        result["splits"][split] = {
            "images": summary["n_images"],
            "real_images": sum(n for i, n in variants[split].items()
                               if records[i].get("origin") == "real"),
            "clean_cutouts": len(assignment[split]),
            "fields": len(fields),
            "class_pixels": summary["class_pixels"],
            "class_fraction": summary["class_fraction"],
            "class_images": dict(zip(ABBREVIATIONS, map(int, images_with), strict=True)),
        }
        log.info("%s: %d images from %d cutouts in %d fields -> %s", split,
                 summary["n_images"], len(assignment[split]), len(fields), out[split])
    bar.close()
    result["images"] = sum(v["images"] for v in result["splits"].values())
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["images_per_second"] = round(result["images"] / max(result["seconds"], 1e-9), 2)
    missing_cls = [c.abbr for c in CLASSES
                   if result["splits"]["train"]["class_images"][c.abbr] == 0]
    if missing_cls:
        log.warning("no training image shows class(es) %s: raise their probability or the "
                    "number of variants", ", ".join(missing_cls))
    if preview is not None:
        ordered = {c.abbr: examples[c.abbr][1] for c in CLASSES if c.abbr in examples}
        save_preview(ordered, preview)
    if report is not None:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2) + "\n")
    return result


def demo_clean_samples(n: int, *, rng: np.random.Generator, shape: tuple[int, int] = (400, 400),
                       exposures: int = 4) -> list[Sample]:
    """Fake clean cutouts: sky, noise, Moffat stars and a few galaxies, with records.

    For tests, benchmarks and trying synthesis before a clean set exists. Inherent
    labels follow the same rules as the clean stage (SAT at ``saturate``, BG/BBG by
    :func:`mmx.sky.background.label_background`).

    Parameters
    ----------
    n : int
        Number of cutouts.
    rng : numpy.random.Generator
        Source of every random draw.
    shape : tuple of int
        Cutout shape [px].
    exposures : int
        Number of distinct exposures (fields) the cutouts are spread over.

    Returns
    -------
    list of Sample
    """
    from mmx.synthesis.contaminants._core import _add_moffat

    out = []
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    for i in range(n):
        gain = float(rng.uniform(1.5, 4.0))
        read_noise = float(rng.uniform(2.0, 5.0))
        sky = float(rng.uniform(50.0, 2000.0))
        sky_noise = float(np.sqrt(sky / gain + read_noise**2))
        fwhm = float(rng.uniform(2.5, 5.0))
        level = float(rng.uniform(3e4, 6e4))
        record = {
            "instrument": "DEMO", "exposure": f"demo{i % max(exposures, 1):03d}",
            "ccd": i // max(exposures, 1) + 1, "x0": 0, "y0": 0, "band": "i",
            "exptime": float(rng.choice([60.0, 180.0, 300.0, 600.0])), "gain": gain,
            "read_noise": read_noise, "saturate": level, "sky": sky, "sky_noise": sky_noise,
            "fwhm": fwhm, "pixel_scale": 0.26, "spider_angle": float(rng.choice([0.0, 45.0])),
            "overscan_noise": read_noise,
        }
        light = np.zeros(shape)
        for _ in range(int(rng.integers(15, 60))):
            peak = sky_noise * np.exp(rng.uniform(np.log(3.0), np.log(0.3 * level / sky_noise)))
            _add_moffat(light, rng.uniform(0, shape[1]), rng.uniform(0, shape[0]), peak=peak,
                        fwhm=fwhm, beta=3.0, floor=0.01 * sky_noise)
        for _ in range(int(rng.integers(2, 8))):
            x0, y0 = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
            q, pa, scale = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi), rng.uniform(2.0, 10.0)
            u = (xx - x0) * np.cos(pa) + (yy - y0) * np.sin(pa)
            v = (-(xx - x0) * np.sin(pa) + (yy - y0) * np.cos(pa)) / q
            light += sky_noise * rng.uniform(2.0, 30.0) * np.exp(-np.hypot(u, v) / scale)
        photons = rng.poisson(np.clip(sky + light, 0, None) * gain) / gain
        image = (photons + rng.normal(0.0, read_noise, shape)).astype(np.float32)
        image = np.minimum(image, np.float32(level))
        labels = np.where(image >= level, np.uint16(label_bit("SAT")), np.uint16(0))
        ignore = np.zeros(shape, dtype=np.uint8)
        bbg, bg = label_background(image, contaminants=labels != 0)
        labels[bbg] |= np.uint16(_BBG)
        labels[bg] |= np.uint16(_BG)
        out.append(Sample(image=image, labels=labels.astype(np.uint16), ignore=ignore,
                          record=record))
    return out
