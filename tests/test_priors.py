"""Prior correction: the paper's formula, its limits, and the logit-shift implementation."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mmx.errors import ConfigError
from mmx.model.priors import (
    correct_logits,
    correct_probabilities,
    logit,
    prior_shift,
    resolve_priors,
)


def _paper(p, pn, prior):
    """The formula as printed in Paillassa et al. (2020), evaluated literally."""
    return p / (p + (pn / (1 - pn)) * ((1 - prior) / prior) * (1 - p))


def test_hand_computed_values():
    # P_N(c|x) = 0.5, P_N(c) = 0.01, P(c) = 5e-4:
    # 0.5 / (0.5 + (0.01/0.99) * (0.9995/0.0005) * 0.5) = 1 / (1 + 20.1919...) = 0.04718780...
    expected = 1.0 / (1.0 + (0.01 / 0.99) * (0.9995 / 0.0005))
    assert_allclose(correct_probabilities(0.5, 0.01, 5e-4), expected, rtol=1e-12)
    assert_allclose(expected, 0.0471877979, rtol=1e-9)
    # P_N(c|x) = 0.9, P_N(c) = 0.2, P(c) = 0.5: odds 9 * (0.5/0.5) / (0.2/0.8) = 36 -> 36/37
    assert_allclose(correct_probabilities(0.9, 0.2, 0.5), 36 / 37, rtol=1e-12)


def test_matches_paper_formula_on_a_grid():
    p = np.linspace(0.001, 0.999, 201)
    for pn, prior in [(0.01, 5e-4), (0.395, 0.9), (0.126, 1e-3), (0.5, 0.5), (1e-3, 0.3)]:
        assert_allclose(correct_probabilities(p, pn, prior), _paper(p, pn, prior), rtol=1e-10)


def test_identity_when_prior_equals_training_prior():
    p = np.array([0.0, 1e-12, 0.3, 0.5, 0.999999, 1.0])
    assert_allclose(correct_probabilities(p, 0.123, 0.123), p, rtol=1e-12, atol=0)
    assert prior_shift(0.123, 0.123) == 0.0


def test_limits_at_zero_and_one_are_exact_and_finite():
    out = correct_probabilities(np.array([0.0, 1.0]), 0.01, 5e-4)
    assert out.tolist() == [0.0, 1.0]
    logits = np.array([-np.inf, -800.0, 800.0, np.inf], dtype=np.float32)[None, :]
    shifted = correct_logits(logits.copy(), [prior_shift(0.01, 5e-4)], axis=0)
    assert not np.isnan(shifted).any()
    assert shifted[0, 0] == -np.inf and shifted[0, 3] == np.inf


def test_monotonic_in_probability_and_in_prior():
    p = np.linspace(0, 1, 1001)
    out = correct_probabilities(p, 0.05, 1e-3)
    assert np.all(np.diff(out) > 0)
    priors = np.logspace(-6, -0.01, 50)
    by_prior = [float(correct_probabilities(0.7, 0.05, q)) for q in priors]
    assert np.all(np.diff(by_prior) > 0)
    # a smaller expected proportion than in training lowers every probability
    assert np.all(out[1:-1] < p[1:-1])


def test_logit_shift_on_tensors_equals_formula():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 5, 5, generator=gen) * 4
    pn, prior = np.array([0.01, 0.1, 0.395]), np.array([5e-4, 1e-3, 0.9])
    shifted = correct_logits(z.clone(), prior_shift(pn, prior))
    got = torch.sigmoid(shifted).double().numpy()
    p = torch.sigmoid(z).double().numpy()
    for c in range(3):
        assert_allclose(got[:, c], _paper(p[:, c], pn[c], prior[c]), rtol=2e-5, atol=1e-7)


def test_logit_is_exact_at_the_ends():
    assert logit(0.0) == -np.inf and logit(1.0) == np.inf and logit(0.5) == 0.0


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_out_of_range_proportions_are_refused(bad):
    with pytest.raises(ConfigError, match="must be in \\(0, 1\\)"):
        prior_shift(0.1, bad)
    with pytest.raises(ConfigError, match="training prior"):
        prior_shift(bad, 0.1)


def test_resolve_priors_defaults_user_values_and_errors():
    training = {"CR": 0.01, "BG": 0.4}
    pn, used, shift = resolve_priors(["CR", "BG"], training, priors={"CR": 1e-3})
    assert used == {"CR": 1e-3, "BG": 0.9}  # BG from the class table
    assert_allclose(shift, [logit(1e-3) - logit(0.01), logit(0.9) - logit(0.4)])
    _, _, zero = resolve_priors(["CR"], training, apply=False)
    assert zero.tolist() == [0.0]
    with pytest.raises(ConfigError, match="no usable training prior for TRL"):
        resolve_priors(["TRL"], training)
    with pytest.raises(ConfigError, match="not among the output classes"):
        resolve_priors(["CR"], training, priors={"BG": 0.5})
    with pytest.raises(ConfigError, match="--no-prior"):
        resolve_priors(["CR"], training, priors={"CR": 0.5}, apply=False)
