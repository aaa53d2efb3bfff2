"""Synthesis: deterministic shard sets, round trips, field-disjoint splits, honest priors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmx.classes import ABBREVIATIONS, label_bit
from mmx.errors import ConfigError, InputError
from mmx.io.shards import ShardSet, ShardWriter
from mmx.synthesis.config import INJECTORS, SynthesisConfig
from mmx.synthesis.demo import demo_clean_samples
from mmx.synthesis.injection import synthesize_sample
from mmx.synthesis.splits import SPLITS, split_by_field
from mmx.synthesis.stage import synthesize

SHAPE = (96, 96)
_ALL = {abbr: {"probability": 0.5} for abbr in INJECTORS}


@pytest.fixture(scope="module")
def clean():
    return demo_clean_samples(6, rng=np.random.default_rng(11), shape=SHAPE, exposures=6)


def _config(**kw):
    base = {"seed": 3, "contaminants": _ALL, "variants": {"train": 2, "val": 1, "test": 1},
            "shard_size": 4, "background": {"mesh": 32}}
    base.update(kw)
    return SynthesisConfig.from_mapping(base)


def _run(clean, folder, workers=1, **kw):
    out = {s: folder / s for s in SPLITS}
    report = synthesize(clean, out=out, config=_config(**kw), report=folder / "synthesis.json",
                        preview=None, progress=False, workers=workers)
    return out, report


def test_same_seed_gives_identical_shards_in_process_or_in_a_pool(clean, tmp_path):
    out_a, _ = _run(clean, tmp_path / "a")
    out_b, _ = _run(clean, tmp_path / "b", workers=2)  # 2 spawned processes
    for split in SPLITS:
        a, b = ShardSet(out_a[split]), ShardSet(out_b[split])
        assert len(a) == len(b) > 0
        for sa, sb in zip(a, b, strict=True):
            np.testing.assert_array_equal(sa.image, sb.image)
            np.testing.assert_array_equal(sa.labels, sb.labels)
            np.testing.assert_array_equal(sa.ignore, sb.ignore)
            assert sa.record == sb.record
    _run(clean, tmp_path / "c", seed=4)
    first = ShardSet(tmp_path / "c" / "train")[0]
    assert not np.array_equal(first.image, ShardSet(out_a["train"])[0].image)


def test_splits_never_share_a_field_and_report_adds_up(clean, tmp_path):
    out, report = _run(clean, tmp_path)
    fields = {}
    for split in SPLITS:
        fields[split] = {r.record["exposure"] for r in ShardSet(out[split])}
        assert report["splits"][split]["images"] == len(ShardSet(out[split]))
    assert not fields["train"] & fields["test"]
    assert not fields["train"] & fields["val"]
    assert not fields["val"] & fields["test"]
    on_disk = json.loads((tmp_path / "synthesis.json").read_text())
    assert on_disk["images"] == sum(len(ShardSet(out[s])) for s in SPLITS)
    assert set(on_disk["splits"]["train"]["class_pixels"]) == set(ABBREVIATIONS)


def test_class_proportions_are_labelled_over_valid_pixels(clean, tmp_path):
    out, _ = _run(clean, tmp_path)
    data = ShardSet(out["train"])
    valid = 0
    counts = np.zeros(len(ABBREVIATIONS))
    for s in data:
        ok = s.ignore == 0
        valid += ok.sum()
        for k in range(len(ABBREVIATIONS)):
            counts[k] += np.count_nonzero((s.labels[ok] & (1 << k)) != 0)
    expected = dict(zip(ABBREVIATIONS, counts / valid, strict=True))
    for abbr, value in data.class_fraction.items():
        assert value == pytest.approx(expected[abbr], abs=1e-12)


def test_shard_round_trip_keeps_images_truth_and_ignore(clean, tmp_path):
    rng = np.random.default_rng(0)
    sample = synthesize_sample(clean[0], rng=rng, config=_config(), classes=["CR", "OV", "TRL"])
    sample.ignore[:3, :3] = 1
    with ShardWriter(tmp_path / "set", shard_size=1) as writer:
        writer.add(sample)
        writer.add(sample)
    back = ShardSet(tmp_path / "set")
    assert len(back) == 2
    np.testing.assert_array_equal(back[1].image, sample.image)
    np.testing.assert_array_equal(back[1].labels, sample.labels)
    np.testing.assert_array_equal(back[1].ignore, sample.ignore)
    assert back[1].record["injected"] == ["TRL", "CR", "OV"]  # in the order applied


def test_background_never_on_a_contaminant(clean):
    config = _config(contaminants={a: {"probability": 1.0} for a in INJECTORS})
    sample = synthesize_sample(clean[1], rng=np.random.default_rng(2), config=config)
    bg = (sample.labels & label_bit("BG")) != 0
    others = (sample.labels & ~np.uint16(label_bit("BG") | label_bit("BBG"))) != 0
    assert not (bg & others).any()
    assert not (bg & ((sample.labels & label_bit("BBG")) != 0)).any()
    assert set(sample.record["injected"]) == set(INJECTORS)


def test_each_injected_class_is_labelled_and_overscan_is_pure(clean):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        sample = synthesize_sample(clean[2], rng=rng, config=_config(),
                                   classes=[a for a in INJECTORS if a != "OV"])
        for abbr in INJECTORS:
            if abbr != "OV":
                assert (sample.labels & label_bit(abbr)).any(), abbr
        sample = synthesize_sample(clean[2], rng=rng, config=_config(), classes=list(INJECTORS))
        ov = (sample.labels & label_bit("OV")) != 0
        assert np.all(sample.labels[ov] == label_bit("OV"))
        assert np.all(sample.ignore[ov] == 0)
        sat = (sample.labels & label_bit("SAT")) != 0
        assert sample.image.max() <= clean[2].record["saturate"]
        assert np.all(sample.image[sample.image >= clean[2].record["saturate"]] > 0)
        assert sat[sample.image >= clean[2].record["saturate"]].all()


def test_split_by_field_falls_back_to_ccds():
    records = [{"instrument": "X", "exposure": "e1", "ccd": c} for c in range(10)]
    parts = split_by_field(records, fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                           rng=np.random.default_rng(0))
    assert sorted(sum(parts.values(), [])) == list(range(10))
    assert all(parts[s] for s in SPLITS)


def test_bad_settings_are_config_errors(clean):
    with pytest.raises(ConfigError, match="unknown synthesize setting"):
        SynthesisConfig.from_mapping({"sead": 1})
    with pytest.raises(ConfigError, match="CR: unknown setting"):
        SynthesisConfig.from_mapping({"contaminants": {"CR": {"rates": [1, 2]}}})
    with pytest.raises(ConfigError, match="probability must be in"):
        SynthesisConfig.from_mapping({"contaminants": {"TRL": {"probability": 2}}})
    with pytest.raises(ConfigError, match="has no injector"):
        SynthesisConfig.from_mapping({"contaminants": {"BG": {"probability": 0.5}}})
    with pytest.raises(InputError, match="empty"):
        synthesize([], out={s: s for s in SPLITS}, config=_config())


def test_params_yaml_section_is_valid():
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    config = SynthesisConfig.from_mapping(params["synthesize"])
    assert set(config.contaminants) == set(INJECTORS)


def test_split_is_stratified_by_instrument_with_contiguous_blocks():
    # the default survey's shape: one exposure and two CCDs per instrument
    records = [{"instrument": inst, "exposure": f"{inst}0", "ccd": ccd, "y0": 400 * k, "x0": 0}
               for inst in ("DECam", "HSC", "MegaCam") for ccd in (1, 2) for k in range(10)]
    parts = split_by_field(records, fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                           rng=np.random.default_rng(0))
    assert sorted(sum(parts.values(), [])) == list(range(len(records)))
    for split in SPLITS:
        assert {records[i]["instrument"] for i in parts[split]} == {"DECam", "HSC", "MegaCam"}
    for inst in ("DECam", "HSC", "MegaCam"):  # 20 cutouts each: 12 / 4 / 4, in order
        idx = {s: [i for i in parts[s] if records[i]["instrument"] == inst] for s in SPLITS}
        assert [len(idx[s]) for s in ("train", "val", "test")] == [12, 4, 4]
        assert max(idx["train"]) < min(idx["val"]) and max(idx["val"]) < min(idx["test"])
