"""Loss: MaxiMask class weights, 3x3 pixel weights, ignore plane, deep supervision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmx.errors import ConfigError
from mmx.loss import MaskLoss, class_weights, labels_to_targets, pixel_weights


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
