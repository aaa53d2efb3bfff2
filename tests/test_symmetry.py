"""Test-time augmentation (:mod:`mmx.model.symmetry`): the views and their average."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from mmx.errors import ConfigError
from mmx.model.symmetry import (
    _VIEWS,
    TTA_MODES,
    SymmetryAveraged,
    _unview,
    _view,
    average_over_symmetries,
)


def test_flips_are_the_four_flips_and_dihedral_the_eight_symmetries():
    x = np.arange(2 * 3 * 5).reshape(1, 2, 3, 5)
    flips = [_view(x, k, t) for k, t in _VIEWS["flips"]]
    for view, axes in zip(flips, [(), (-1,), (-2,), (-2, -1)], strict=True):
        assert_array_equal(view, np.flip(x, axes) if axes else x)
    square = np.arange(16).reshape(1, 1, 4, 4)
    assert len({_view(square, k, t).tobytes() for k, t in _VIEWS["dihedral"]}) == 8
    for mode in TTA_MODES:
        for k, t in _VIEWS[mode]:
            assert_array_equal(_unview(_view(x, k, t), k, t), x)


def _column_gradient(x: np.ndarray) -> np.ndarray:
    """Not symmetric: logits (N, 2, H, W) = the image and its difference along x."""
    d = np.diff(x, axis=-1, append=x[..., -1:])
    return np.concatenate([x, d], axis=1).astype(np.float32)


@pytest.mark.parametrize("mode", ["flips", "dihedral"])
def test_average_is_the_mean_of_the_views_mapped_back(rng, mode):
    x = rng.normal(size=(2, 1, 6, 10)).astype(np.float32)  # not square: swapped sides too
    calls = []

    def run(v):
        assert v.flags.c_contiguous
        calls.append(v.shape)
        return _column_gradient(v)

    got = average_over_symmetries(run, x, mode)
    expected = np.mean([_unview(_column_gradient(np.ascontiguousarray(_view(x, k, t))), k, t)
                        for k, t in _VIEWS[mode]], axis=0)
    assert len(calls) == len(_VIEWS[mode]) and got.shape == (2, 2, 6, 10)
    assert_allclose(got, expected, rtol=1e-6)
    assert_allclose(got[:, 0], x[:, 0], rtol=1e-6)  # the image plane is symmetric: unchanged
    assert not np.allclose(got[:, 1], _column_gradient(x)[:, 1])  # the gradient is not


def test_none_is_one_pass_and_unknown_modes_are_refused(rng):
    x = rng.normal(size=(1, 1, 4, 4)).astype(np.float32)
    assert average_over_symmetries(_column_gradient, x, "none") is not None
    with pytest.raises(ConfigError, match="tta must be one of none, flips, dihedral, got 'all'"):
        average_over_symmetries(_column_gradient, x, "all")


def test_wrapped_runtime_keeps_stride_tile_cap_and_names_the_mode():
    class Runtime:
        name, stride, max_tile = "onnxruntime/float32", 16, 768

        def __call__(self, x):
            return _column_gradient(x)

    wrapped = SymmetryAveraged(Runtime(), "flips")
    assert (wrapped.name, wrapped.stride, wrapped.max_tile) == \
        ("onnxruntime/float32+flips", 16, 768)
    assert wrapped(np.ones((1, 1, 4, 4), np.float32)).shape == (1, 2, 4, 4)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_torch_tensors_average_as_numpy_arrays_do(mode):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=(2, 1, 6, 9)).astype(np.float32)
    kernel = np.arange(6, dtype=np.float32).reshape(1, 2, 3)  # not symmetric: views differ

    def run(batch):  # a position-dependent, nonlinear map (N, 1, H, W) -> (N, 2, H, W)
        if isinstance(batch, np.ndarray):
            return np.tanh(np.concatenate([batch, batch ** 2], axis=1)
                           * kernel[:, :, :1, None] + np.cumsum(batch, axis=-1))
        return torch.tanh(torch.cat([batch, batch ** 2], dim=1)
                          * torch.from_numpy(kernel[:, :, :1, None]) + batch.cumsum(-1))

    want = average_over_symmetries(run, x, mode)
    got = average_over_symmetries(run, torch.from_numpy(x), mode)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
