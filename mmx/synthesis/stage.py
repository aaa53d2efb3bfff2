"""The synthesize stage: train/val/test shard sets written from a clean set.

Each split has its own random stream; each image's stream is derived from
``(seed, split, cutout, variant)`` alone, so results do not depend on processing order.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmx.classes import ABBREVIATIONS, CLASSES, N_CLASSES, by_abbr
from mmx.errors import ConfigError, InputError
from mmx.io.shards import Sample, ShardWriter, class_pixel_counts
from mmx.parallel import available_cpus, process_pool
from mmx.synthesis.config import SynthesisConfig
from mmx.synthesis.injection import synthesize_sample
from mmx.synthesis.preview import save_preview
from mmx.synthesis.splits import SPLITS, split_by_field, variants_per_cutout

__all__ = ["synthesize"]

log = logging.getLogger(__name__)

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


def _image_rng(seed: int, split: int, index: int, variant: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), split, index, variant]))


def _make_sample(job: tuple[int, str, int, int], clean: Sequence[Sample],
                 config: SynthesisConfig, footprints: Sequence[np.ndarray]) -> Sample:
    """Image ``variant`` of clean cutout ``index`` in split ``split`` (number ``s_index``)."""
    s_index, split, index, variant = job
    rng = _image_rng(config.seed, s_index, index, variant)
    sample = synthesize_sample(clean[index], rng=rng, config=config, footprints=footprints)
    sample.record.update(split=split, clean_index=int(index), variant=variant)
    return sample


_worker_inputs: tuple = ()  # (clean, config, footprints) in a pool worker


def _set_worker_inputs(*inputs) -> None:
    global _worker_inputs
    _worker_inputs = inputs


def _make_sample_in_worker(job: tuple[int, str, int, int]) -> Sample:
    return _make_sample(job, *_worker_inputs)


def synthesize(
    clean: Sequence[Sample],
    *,
    out: Mapping[str, str | Path],
    config: SynthesisConfig,
    report: str | Path | None = None,
    preview: str | Path | None = None,
    progress: bool = True,
    footprints: Sequence[np.ndarray] = (),
    workers: int | None = None,
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
    footprints : sequence of numpy.ndarray
        Real cosmic-ray hits [e-] (the clean stage's library) for the CR injector.
    workers : int, optional
        Images synthesized in parallel processes (default: the CPUs available; the
        output does not depend on it). ``clean`` must then pickle cheaply, as a
        :class:`mmx.io.shards.ShardSet` does.

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
    result: dict = {"seed": int(config.seed), "cosmic_ray_footprints": len(footprints),
                    "splits": {}}
    examples: dict[str, tuple[tuple, Sample]] = {}
    variants = {s: variants_per_cutout(records, assignment[s], base=int(config.variants[s]),
                                       real_fraction=float(config.real_fraction))
                for s in SPLITS}
    total = sum(sum(v.values()) for v in variants.values())
    jobs = {split: [(s_index, split, index, variant) for index in assignment[split]
                    for variant in range(variants[split][index])]
            for s_index, split in enumerate(SPLITS)}
    n_workers = min(available_cpus() if workers is None else workers, total)
    inputs = (clean, config, tuple(footprints))
    with (tqdm(total=total, desc="synthesize", unit="img", disable=not progress) as bar,
          process_pool(n_workers, initializer=_set_worker_inputs, initargs=inputs) as pool):
        for split in SPLITS:
            images_with = np.zeros(N_CLASSES, dtype=np.int64)
            fields = sorted({str((r.get("instrument"), r.get("field") or r.get("exposure")))
                             for r in (records[i] for i in assignment[split])})
            made = (pool.map(_make_sample_in_worker, jobs[split], chunksize=8) if pool
                    else (_make_sample(job, *inputs) for job in jobs[split]))
            writer = ShardWriter(out[split], shard_size=int(config.shard_size))
            try:
                for sample in made:
                    writer.add(sample)
                    images_with += class_pixel_counts(sample.labels, sample.ignore) > 0
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
