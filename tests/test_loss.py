"""Loss: balanced per-class BCE, MaxiMask class and pixel weights, ignore, deep supervision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmx.errors import ConfigError
from mmx.training.loss import (
    BalancedBCE,
    MaskLoss,
    balanced_weights,
    build_loss,
    class_weights,
    effective_priors,
    labels_to_targets,
    pixel_weights,
)


def test_class_weights_follow_the_paper():
    # 1/p = [2, 4, 4], sum 10: w = 1 / (p * 10)
    w = class_weights([0.5, 0.25, 0.25], classes=["A", "B", "C"])
    assert w.tolist() == pytest.approx([0.2, 0.4, 0.4])
    w = class_weights({"A": 0.5, "B": 0.5, "C": 0.0}, classes=["A", "B", "C"])
    assert w.tolist() == pytest.approx([0.5, 0.5, 0.5])  # absent class: largest weight
    w = class_weights([0.9, 0.09, 0.01], classes=["A", "B", "C"], max_ratio=10)
    raw = np.array([1 / 0.9, 1 / 0.09, 1 / 0.01]) / (1 / 0.9 + 1 / 0.09 + 1 / 0.01)
    assert w.tolist() == pytest.approx([raw[2] / 10, raw[1], raw[2]])


def test_class_weights_reject_bad_fractions():
    with pytest.raises(ConfigError, match="lack C"):
        class_weights({"A": 0.5, "B": 0.5}, classes=["A", "B", "C"])
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        class_weights([0.5, -0.1], classes=["A", "B"])
    with pytest.raises(ConfigError, match="all class fractions are 0"):
        class_weights([0.0, 0.0], classes=["A", "B"])


def _row():
    """One row of 4 pixels, 3 classes: class 0 everywhere but pixel 3 (class 1).

    Pixel 0 is ignored and also carries class 1, which must not spread to pixel 1.
    """
    labels = torch.tensor([[[0b011, 0b001, 0b001, 0b010]]], dtype=torch.int32)
    ignore = torch.tensor([[[1, 0, 0, 0]]], dtype=torch.uint8)
    return labels, ignore


def test_pixel_weight_is_the_largest_class_weight_in_the_3x3_neighbourhood():
    labels, ignore = _row()
    w = torch.tensor([0.2, 0.8, 0.5])
    pw = pixel_weights(labels_to_targets(labels, n_classes=3), ignore == 0, w)
    # pixel 1: own class 0, neighbour 0 ignored, neighbour 2 class 0 -> 0.2
    # pixel 2: neighbour 3 has class 1 -> 0.8; pixel 3: class 1 -> 0.8
    assert pw[0, 0, 1:].tolist() == pytest.approx([0.2, 0.8, 0.8])
    own = pixel_weights(labels_to_targets(labels, n_classes=3), ignore == 0, w, neighbourhood=1)
    assert own[0, 0, 1:].tolist() == pytest.approx([0.2, 0.2, 0.8])
    with pytest.raises(ConfigError, match="odd number of pixels >= 1, got 2"):
        pixel_weights(labels_to_targets(labels, n_classes=3), ignore == 0, w, neighbourhood=2)


def test_loss_on_a_hand_computed_example():
    labels, ignore = _row()
    w = torch.tensor([0.2, 0.8, 0.5])
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 0, 0, 1] = 2.0   # class 0 at pixel 1 (true): BCE = log(1 + e^-2)
    logits[0, 2, 0, 3] = -1.0  # class 2 at pixel 3 (false): BCE = log(1 + e^-1)
    logits[:, :, 0, 0] = 50.0  # ignored pixel: any value, no contribution
    ln2 = math.log(2.0)
    p1 = 0.2 * (math.log1p(math.exp(-2.0)) + 2 * ln2)
    p2 = 0.8 * 3 * ln2
    p3 = 0.8 * (2 * ln2 + math.log1p(math.exp(-1.0)))
    expected = (p1 + p2 + p3) / 3  # averaged over the 3 valid pixels
    loss = MaskLoss(w, aux_weight=0.0)(logits, labels, ignore)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # deep supervision adds aux_weight times the mean loss of the auxiliary outputs
    ds = MaskLoss(w, aux_weight=0.5)(logits, labels, ignore, [logits, torch.zeros_like(logits)])
    aux_zero = (0.2 + 0.8 + 0.8) * 3 * ln2 / 3
    assert float(ds) == pytest.approx(expected + 0.5 * (expected + aux_zero) / 2, rel=1e-6)


def test_fully_ignored_batch_gives_zero_and_a_gradient():
    labels, _ = _row()
    logits = torch.randn(1, 3, 1, 4, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
    loss = MaskLoss(torch.ones(3))(logits, labels, torch.ones(1, 1, 4, dtype=torch.uint8))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_negative_aux_weight_is_refused():
    with pytest.raises(ConfigError, match="aux_weight must be >= 0, got -1"):
        MaskLoss(torch.ones(3), aux_weight=-1)


def test_balanced_weights_on_a_hand_computed_example():
    # p = 0.2: odds of a negative 4. beta = 1: r = 4, w- = 1 / (0.2 * 4 + 0.8) = 0.625,
    # w+ = 2.5 (positives and negatives each weigh 0.5 in total). p = 0.5: r = 1, both 1.
    pos, neg = balanced_weights([0.2, 0.5], classes=["A", "B"], beta=1.0, max_ratio=None)
    assert pos.tolist() == pytest.approx([2.5, 1.0])
    assert neg.tolist() == pytest.approx([0.625, 1.0])
    # beta = 0.5: r = 2, w- = 1 / (0.4 + 0.8); cap: r <= 3 for p = 0.01 (odds 99)
    pos, neg = balanced_weights([0.2, 0.01], classes=["A", "B"], beta=0.5, max_ratio=3)
    assert pos.tolist() == pytest.approx([2 / 1.2, 3 / (0.03 + 0.99)])
    assert neg.tolist() == pytest.approx([1 / 1.2, 1 / (0.03 + 0.99)])
    # beta = 0 is plain BCE; a class absent from the split gets the cap
    pos, neg = balanced_weights([0.2, 0.0], classes=["A", "B"], beta=0.0, max_ratio=10)
    assert pos.tolist() == pytest.approx([1.0, 1.0]) and neg.tolist() == pytest.approx([1.0, 1.0])
    pos, neg = balanced_weights([0.2, 0.0], classes=["A", "B"], beta=1.0, max_ratio=10)
    assert pos[1].item() == pytest.approx(10.0) and neg[1].item() == pytest.approx(1.0)


def test_balanced_weights_reject_bad_settings():
    with pytest.raises(ConfigError, match="beta must be >= 0, got -1"):
        balanced_weights([0.5, 0.5], classes=["A", "B"], beta=-1)
    with pytest.raises(ConfigError, match="must be >= 1 or null, got 0.5"):
        balanced_weights([0.5, 0.5], classes=["A", "B"], max_ratio=0.5)
    with pytest.raises(ConfigError, match="unknown loss 'dice'"):
        build_loss("dice", [0.5, 0.5], classes=["A", "B"])


def test_effective_priors_multiply_the_odds_by_the_weight_ratio():
    # p = 0.2 (odds 1/4) with w+/w- = 4: odds 1, prior 0.5; p = 0.01 with ratio 3: odds 3/99
    pri = effective_priors([0.2, 0.01], [2.5, 3.0], [0.625, 1.0])
    assert pri.tolist() == pytest.approx([0.5, 3 / 102])
    # the weighted BCE's best constant logit is logit of that prior
    z = torch.linspace(-6, 6, 12001, dtype=torch.float64)
    for p, wp, wn, prior in ((0.2, 2.5, 0.625, pri[0]), (0.01, 3.0, 1.0, pri[1])):
        risk = p * wp * F.softplus(-z) + (1 - p) * wn * F.softplus(z)
        assert float(torch.sigmoid(z[risk.argmin()])) == pytest.approx(prior, abs=1e-3)


def test_balanced_bce_on_a_hand_computed_example():
    labels, ignore = _row()  # pixels 1, 2: class 0; pixel 3: class 1; pixel 0 ignored
    pos, neg = torch.tensor([2.0, 4.0, 1.0]), torch.tensor([0.5, 0.25, 1.0])
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 0, 0, 1] = 2.0   # class 0 at pixel 1 (true): log(1 + e^-2), weight 2
    logits[0, 2, 0, 3] = -1.0  # class 2 at pixel 3 (false): log(1 + e^-1), weight 1
    logits[:, :, 0, 0] = 50.0  # ignored pixel: no contribution
    ln2 = math.log(2.0)
    p1 = 2.0 * math.log1p(math.exp(-2.0)) + 0.25 * ln2 + 1.0 * ln2
    p2 = 2.0 * ln2 + 0.25 * ln2 + 1.0 * ln2
    p3 = 0.5 * ln2 + 4.0 * ln2 + 1.0 * math.log1p(math.exp(-1.0))
    expected = (p1 + p2 + p3) / 3
    loss = BalancedBCE(pos, neg, aux_weight=0.0)
    assert float(loss(logits, labels, ignore)) == pytest.approx(expected, rel=1e-6)
    ds = BalancedBCE(pos, neg, aux_weight=0.5)(logits, labels, ignore, [logits])
    assert float(ds) == pytest.approx(1.5 * expected, rel=1e-6)
    # focal factor (1 - p_t)^gamma: at logit 0, p_t = 1/2 for every term
    focal = BalancedBCE(pos, neg, aux_weight=0.0, focal_gamma=2.0)
    zero = torch.zeros_like(logits)
    assert float(focal(zero, labels, ignore)) == pytest.approx(
        0.25 * float(loss(zero, labels, ignore)), rel=1e-6)
    with pytest.raises(ConfigError, match="focal_gamma must be >= 0, got -1"):
        BalancedBCE(pos, neg, focal_gamma=-1)


def test_build_loss_returns_the_calibration_priors():
    loss, pri = build_loss("balanced", [0.2, 0.5], classes=["A", "B"], beta=1.0, max_ratio=None)
    assert isinstance(loss, BalancedBCE) and pri.tolist() == pytest.approx([0.5, 0.5])
    loss, pri = build_loss("paper", [0.2, 0.8], classes=["A", "B"], neighbourhood=1)
    assert isinstance(loss, MaskLoss) and pri.tolist() == pytest.approx([0.2, 0.8])
    assert loss.neighbourhood == 1


def test_hard_negatives_weigh_more_where_another_contaminant_is():
    # pixel 0: CR and HCL; pixel 1: HCL; pixel 2: BG only; pixel 3: nothing
    classes = ["CR", "HCL", "BG"]
    labels = torch.tensor([[[0b011, 0b010, 0b100, 0]]], dtype=torch.int32)
    ignore = torch.zeros_like(labels)
    pos, neg = torch.tensor([4.0, 2.0, 1.0]), torch.tensor([0.5, 0.25, 1.0])
    logits = torch.zeros(1, 3, 1, 4)
    plain = BalancedBCE(pos, neg, aux_weight=0.0, classes=classes)
    hard = BalancedBCE(pos, neg, aux_weight=0.0, hard_negative_weight=10.0, classes=classes)
    ln2 = math.log(2.0)
    # only CR's negative at pixel 1 (an HCL pixel) is hard: BG is no contaminant, and the
    # positives of pixel 0 keep their weight although another class is there too
    extra = (10.0 - 1.0) * 0.5 * ln2
    assert float(hard(logits, labels, ignore)) == pytest.approx(
        float(plain(logits, labels, ignore)) + extra / 4, rel=1e-6)
    focal = BalancedBCE(pos, neg, aux_weight=0.0, hard_negative_weight=10.0, focal_gamma=1.0,
                        classes=classes)
    assert float(focal(logits, labels, ignore)) == pytest.approx(
        0.5 * float(hard(logits, labels, ignore)), rel=1e-6)
    with pytest.raises(ConfigError, match="hard_negative_weight must be >= 1, got 0.5"):
        BalancedBCE(pos, neg, hard_negative_weight=0.5, classes=classes)
    with pytest.raises(ConfigError, match="needs the balanced loss"):
        build_loss("paper", [0.2, 0.8], classes=["A", "B"], hard_negative_weight=3.0)


def test_boundary_weight_multiplies_both_sides_of_a_contaminant_edge():
    # one row of 6 pixels: CR at 2-3, BG elsewhere; pixel 5 ignored
    classes = ["CR", "BG"]
    labels = torch.tensor([[[0b10, 0b10, 0b01, 0b01, 0b10, 0b10]]], dtype=torch.int32)
    ignore = torch.tensor([[[0, 0, 0, 0, 0, 1]]], dtype=torch.int32)
    pos, neg = torch.tensor([4.0, 1.0]), torch.tensor([0.5, 1.0])
    logits = torch.zeros(1, 2, 1, 6)
    plain = BalancedBCE(pos, neg, aux_weight=0.0, classes=classes)
    edged = BalancedBCE(pos, neg, aux_weight=0.0, boundary_weight=3.0, classes=classes)
    ln2 = math.log(2.0)
    # CR edges: negatives 1 and 4, positives 2 and 3 (each touches the other side); BG is no
    # contaminant; the ignored pixel counts for nothing
    extra = (3.0 - 1.0) * (2 * 0.5 + 2 * 4.0) * ln2
    assert float(edged(logits, labels, ignore)) == pytest.approx(
        float(plain(logits, labels, ignore)) + extra / 5, rel=1e-6)
    with pytest.raises(ConfigError, match="boundary_weight must be >= 1, got 0"):
        BalancedBCE(pos, neg, boundary_weight=0, classes=classes)
    with pytest.raises(ConfigError, match="boundary_weight 2.0 needs the balanced loss"):
        build_loss("paper", [0.2, 0.8], classes=["A", "B"], boundary_weight=2.0)


def test_distillation_targets_put_the_loss_minimum_at_the_teachers_logits():
    # per-pixel weights of every kind (class balance, hard negatives, edges): with all of
    # the target from the teacher, the weighted loss is lowest at the teacher's logits
    classes = ["CR", "HCL", "BG"]
    gen = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 8, (2, 6, 7), generator=gen, dtype=torch.int32)
    ignore = torch.zeros_like(labels)
    ignore[0, 0, :3] = 1
    pos, neg = torch.tensor([40.0, 8.0, 1.5]), torch.tensor([0.6, 0.9, 0.7])
    teacher = torch.randn(2, 3, 6, 7, generator=gen) * 3
    loss = BalancedBCE(pos, neg, aux_weight=0.0, hard_negative_weight=20.0,
                       boundary_weight=2.0, classes=classes, distill_weight=1.0)
    logits = teacher.clone().requires_grad_(True)
    loss(logits, labels, ignore, teacher_logits=teacher).backward()
    assert float(logits.grad.abs().max()) < 1e-7
    logits = (teacher + 0.5).requires_grad_(True)  # elsewhere the gradient is not zero
    loss(logits, labels, ignore, teacher_logits=teacher).backward()
    assert float(logits.grad[:, :, 1:].abs().min()) > 0
    # half the target from the teacher: the minimum lies between the truth's and the teacher's
    half = BalancedBCE(pos, neg, aux_weight=0.0, classes=classes, distill_weight=0.5)
    plain = BalancedBCE(pos, neg, aux_weight=0.0, classes=classes)
    zero = torch.zeros(2, 3, 6, 7)
    assert float(half(zero, labels, ignore)) == float(plain(zero, labels, ignore))
    assert float(half(zero, labels, ignore, teacher_logits=teacher)) != pytest.approx(
        float(plain(zero, labels, ignore)))
    with pytest.raises(ConfigError, match="distill_weight must be in \\[0, 1\\], got 1.5"):
        BalancedBCE(pos, neg, classes=classes, distill_weight=1.5)
    with pytest.raises(ConfigError, match="distill_weight 0.5 needs the balanced loss"):
        build_loss("paper", [0.2, 0.8], classes=["A", "B"], distill_weight=0.5)
    with pytest.raises(ConfigError, match="distill_weight 0.5 needs focal_gamma 0, got 2"):
        BalancedBCE(pos, neg, classes=classes, distill_weight=0.5, focal_gamma=2.0)
