"""Typed stage settings: unknown keys and wrong types are refused, values keep their meaning."""

import shutil
import subprocess
import sys

import pytest
import yaml

from mmx.errors import ConfigError
from mmx.training.config import TrainConfig
from pipelines.params import ROOT


def test_params_yaml_train_section_is_valid_and_typed():
    cfg = TrainConfig.from_mapping(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    assert cfg.max_steps > 0 and cfg.max_time_min is None  # a step budget: reproducible
    assert cfg.precision == "auto" and cfg.threshold_rule == "fpr"


def test_a_typo_is_an_error_naming_the_allowed_keys():
    with pytest.raises(ConfigError, match="unknown train setting.*lr_schedul;.*lr_schedule"):
        TrainConfig.from_mapping({"lr_schedul": "cosine"})


@pytest.mark.parametrize(("key", "value", "match"), [
    ("crop", "big", "train.crop must be an integer, got 'big'"),
    ("crop", 12.5, "must be an integer"),
    ("augment", "yes", "must be true or false"),
    ("lr", "fast", "must be a number"),
    ("final_weights", "middle", "final_weights must be 'best' or 'last'"),
    ("target_fpr", 2.0, r"target_fpr must be in \(0, 1\)"),
])
def test_wrong_values_are_refused(key, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_mapping({key: value})


def test_int_or_float_settings_keep_their_type():
    # Lightning reads 1.0 as "the whole split" and 1 as "one batch": never turn one into the other
    cfg = TrainConfig.from_mapping({"limit_train_batches": 1.0, "limit_val_batches": 2})
    assert type(cfg.limit_train_batches) is float and cfg.limit_train_batches == 1.0
    assert type(cfg.limit_val_batches) is int
    assert TrainConfig.from_mapping({"max_time_min": None}).max_time_min is None
    assert TrainConfig.from_mapping({"max_time_min": 5}).max_time_min == 5.0


def test_the_train_stage_reports_a_bad_setting_in_one_line(tmp_path):
    """``python -m pipelines.train`` (what ``dvc repro`` runs) on a project whose params.yaml
    has a typo: exit status 1 and one line naming the key, no traceback, nothing trained."""
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["lr_schedul"] = "cosine"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "pipelines.train"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert "mmx.train: unknown train setting(s) lr_schedul;" in line
    assert not (tmp_path / params["paths"]["model"]).exists()
