"""Per-model thresholds: chosen by F1 on curves, used by default, overridable."""

import numpy as np
import pytest
import torch

from mmx.classes import ABBREVIATIONS, by_abbr
from mmx.model.package import ModelMeta, ModelPackage
from mmx.model.priors import prior_shift
from mmx.model.thresholds import default_prior_shift
from mmx.serving.inference import Predictor
from mmx.training.calibration import f1_thresholds, fpr_thresholds
from mmx.training.metrics import ClassCurves


def test_f1_threshold_separates_a_clean_split():
    # class 0: positives have logit 3, negatives -3 -> any threshold in between is F1 = 1
    curves = ClassCurves(n_classes=2, n_bins=64, thresholds=[0.5, 0.5])
    logits = torch.full((1, 2, 4, 4), -3.0)
    labels = torch.zeros((1, 4, 4), dtype=torch.int32)
    logits[0, 0, :2] = 3.0
    labels[0, :2] = 1  # class 0 = bit 1; class 1 has no positive pixel
    curves.update(logits, labels, torch.zeros((1, 4, 4), dtype=torch.uint8))
    out = f1_thresholds(curves.compute(), classes=["CR", "HCL"])
    assert set(out) == {"CR"}
    assert 1 / (1 + np.exp(3)) < out["CR"] <= 1 / (1 + np.exp(-3))  # positives still flagged


def test_fpr_threshold_keeps_the_false_positive_rate_at_target():
    # 10,000 negatives with logits spread over [-6, 6]; the threshold must flag <= 1 % of them
    rng = np.random.default_rng(3)
    curves = ClassCurves(n_classes=1, n_bins=2000, thresholds=[0.5])
    logits = torch.from_numpy(rng.uniform(-6, 6, size=(1, 1, 100, 100)).astype(np.float32))
    labels = torch.zeros((1, 100, 100), dtype=torch.int32)
    curves.update(logits, labels, torch.zeros((1, 100, 100), dtype=torch.uint8))
    thr = fpr_thresholds(curves.compute(), classes=["CR"], target_fpr=0.01)["CR"]
    flagged = np.mean(1 / (1 + np.exp(-logits.numpy())) >= thr)
    assert 0.005 < flagged <= 0.01  # at the target, not far below it (binned curve)
    looser = fpr_thresholds(curves.compute(), classes=["CR"], target_fpr={"CR": 0.1})["CR"]
    assert looser < thr
    assert fpr_thresholds(curves.compute(), classes=["CR"], target_fpr={}) == {}


def test_default_prior_shift_matches_the_class_table():
    shift = default_prior_shift({"CR": 0.2, "SAT": 0.5}, ["CR", "SAT"])
    expected = [float(prior_shift(0.2, by_abbr("CR").prior)),
                float(prior_shift(0.5, by_abbr("SAT").prior))]
    assert shift.tolist() == pytest.approx(expected)


class _Constant(torch.nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], len(ABBREVIATIONS), *x.shape[2:])


def _predictor(**kwargs):
    meta = ModelMeta(architecture="const", arch_kwargs={},
                     training_priors=dict.fromkeys(ABBREVIATIONS, 0.3),
                     thresholds={"CR": 0.25}, tile=32, margin=0)
    return Predictor(ModelPackage(net=_Constant(), meta=meta), precision="float32", **kwargs)


def test_predictor_uses_model_thresholds_then_user_overrides():
    predictor = _predictor(classes=["CR", "SAT"])
    assert predictor.default_thresholds() == {"CR": 0.25, "SAT": by_abbr("SAT").threshold}
    image = np.random.default_rng(0).normal(100, 5, (20, 24)).astype(np.float32)
    writer = predictor.predict(image, mode="binary", thresholds={"SAT": 0.5})
    assert writer.thresholds == {"CR": 0.25, "SAT": 0.5}


def test_without_priors_the_operating_point_stays():
    raw = _predictor(classes=["CR"], apply_priors=False).default_thresholds()["CR"]
    shift = default_prior_shift(dict.fromkeys(ABBREVIATIONS, 0.3), ["CR"])[0]
    assert np.log(raw / (1 - raw)) + shift == pytest.approx(np.log(0.25 / 0.75))
