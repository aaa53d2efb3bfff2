"""Binned per-class ROC/purity metric against a slow, obviously correct numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmx.errors import ConfigError
from mmx.training.metrics import ClassCurves, purity_rows, roc_rows, summarize

C, LO, HI, BINS = 3, -4.0, 4.0, 40
THRESHOLDS = [0.5, 0.3, 0.9]


@pytest.fixture
def batch(rng):
    n, h, w = 2, 20, 24
    truth = rng.random((n, C, h, w)) < np.array([0.2, 0.5, 0.0])[None, :, None, None]
    # informative scores: positives higher on average; some beyond the binned range
    z = rng.normal(size=truth.shape) * 2.0 + 2.5 * truth
    labels = (truth * (1 << np.arange(C))[None, :, None, None]).sum(axis=1).astype(np.int32)
    ignore = (rng.random((n, h, w)) < 0.1).astype(np.uint8)
    return z.astype(np.float32), labels, ignore


def _reference(z, labels, ignore):
    """Loop over classes and thresholds; count pixels one comparison at a time."""
    z = z.astype(np.float64)
    valid = ignore == 0
    edges = LO + (HI - LO) / BINS * np.arange(BINS)
    out = {"roc_tpr": [], "roc_fpr": [], "auc": [], "tpr": [], "fpr": [], "purity": [],
           "tpr_at_fpr_1e-1": []}
    for c in range(C):
        pos = ((labels >> c) & 1).astype(bool) & valid
        neg = ~((labels >> c) & 1).astype(bool) & valid
        s = z[:, c]
        points = [(0.0, 0.0)]  # threshold above every score
        for k in range(BINS - 1, 0, -1):
            pred = s >= edges[k]
            points.append((np.sum(pred & neg) / max(neg.sum(), 1),
                           np.sum(pred & pos) / max(pos.sum(), 1)))
        points.append((1.0, 1.0))  # lowest threshold: everything is positive
        fpr, tpr = map(np.array, zip(*points, strict=True))
        if pos.sum() == 0:
            tpr[:] = np.nan
        out["roc_fpr"].append(fpr)
        out["roc_tpr"].append(tpr)
        area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
        out["auc"].append(area)
        out["tpr_at_fpr_1e-1"].append(max(t for f, t in zip(fpr, tpr, strict=True) if f <= 0.1)
                                      if pos.sum() else np.nan)
        prob = 1.0 / (1.0 + np.exp(-s))
        pred = prob >= THRESHOLDS[c]
        tp, fp = np.sum(pred & pos), np.sum(pred & neg)
        out["tpr"].append(tp / pos.sum() if pos.sum() else np.nan)
        out["fpr"].append(fp / neg.sum())
        out["purity"].append(tp / (tp + fp) if tp + fp else np.nan)
    return {k: np.array(v) for k, v in out.items()}


def _metric():
    return ClassCurves(n_classes=C, n_bins=BINS, logit_range=(LO, HI), thresholds=THRESHOLDS,
                       fpr_points=(1e-1,))


def test_curves_match_the_slow_reference(batch):
    z, labels, ignore = batch
    m = _metric()
    m.update(torch.from_numpy(z[:1]), torch.from_numpy(labels[:1]), torch.from_numpy(ignore[:1]))
    m.update(torch.from_numpy(z[1:]), torch.from_numpy(labels[1:]), torch.from_numpy(ignore[1:]))
    got = {k: v.numpy() for k, v in m.compute().items()}
    ref = _reference(z, labels, ignore)
    for key in ("roc_fpr", "roc_tpr", "tpr", "fpr", "purity", "tpr_at_fpr_1e-1"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(got["auc"][:2], ref["auc"][:2], rtol=1e-12)
    assert np.isnan(got["auc"][2])  # class 2 has no positive pixel
    assert got["n_pos"].sum() + got["n_neg"].sum() == C * np.sum(ignore == 0)
    assert got["thresholds"][0] == 1.0 and got["thresholds"][-1] == 0.0
    assert np.all(np.diff(got["thresholds"]) < 0)


def test_ignored_pixels_count_nowhere(batch):
    z, labels, ignore = batch
    m1, m2 = _metric(), _metric()
    m1.update(torch.from_numpy(z), torch.from_numpy(labels), torch.from_numpy(ignore))
    scrambled = np.where(ignore[:, None].astype(bool), 100.0, z).astype(np.float32)
    m2.update(torch.from_numpy(scrambled), torch.from_numpy(labels), torch.from_numpy(ignore))
    for key, value in m1.compute().items():
        np.testing.assert_array_equal(value.numpy(), m2.compute()[key].numpy(), err_msg=key)


def test_summary_and_rows(batch):
    z, labels, ignore = batch
    m = _metric()
    m.update(torch.from_numpy(z), torch.from_numpy(labels), torch.from_numpy(ignore))
    res = m.compute()
    flat = summarize(res, classes=["A", "B", "Z"])
    assert {"A.auc", "A.tpr", "A.fpr", "A.purity", "A.tpr_at_fpr_1e-1", "mean.auc"} <= set(flat)
    assert "Z.auc" not in flat and flat["Z.n_pos"] == 0.0
    assert flat["mean.auc"] == pytest.approx((flat["A.auc"] + flat["B.auc"]) / 2)
    roc = roc_rows(res, classes=["A", "B", "Z"])
    assert {r["class"] for r in roc} == {"A", "B"}
    a = [(r["fpr"], r["tpr"]) for r in roc if r["class"] == "A"]
    assert a[0] == (0.0, 0.0) and a[-1] == (1.0, 1.0)
    assert all(np.diff([f for f, _ in a]) >= 0)
    assert {"class", "purity", "tpr"} == set(purity_rows(res, classes=["A", "B", "Z"])[0])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="thresholds in"):
        ClassCurves(n_classes=2, thresholds=[0.5, 1.0])
    with pytest.raises(ConfigError, match="lo < hi"):
        ClassCurves(n_classes=2, thresholds=[0.5, 0.5], logit_range=(3.0, 1.0))


def test_operating_thresholds_act_like_prior_correction():
    """Thresholding raw posteriors at these values = thresholding corrected ones as predict does."""
    import numpy as np

    from mmx.classes import CLASSES
    from mmx.model.package import ModelMeta, ModelPackage
    from mmx.model.priors import correct_probabilities
    from mmx.training.scoring import operating_thresholds

    trained = {c.abbr: 0.02 for c in CLASSES}
    package = ModelPackage(net=None, meta=ModelMeta(architecture="unet", arch_kwargs={},
                                                    training_priors=trained))
    raw_thr = np.array(operating_thresholds(package))
    for c, t in zip(CLASSES, raw_thr, strict=True):
        z = np.log(t / (1 - t)) + np.array([-1e-3, 1e-3])
        probs = 1 / (1 + np.exp(-z))
        corrected = correct_probabilities(probs, 0.02, c.prior)
        assert corrected[0] < c.threshold < corrected[1]
