"""Tiling: exact coverage for many sizes, margins respected, tiled == whole-image inference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mmx.errors import ConfigError
from mmx.serving.tiling import iter_batches, pad_border, pad_image, plan_tiles

SIZES = [1, 2, 7, 31, 32, 33, 63, 64, 65, 100, 191, 192, 193, 255, 256, 257, 400, 513, 1000]


@pytest.mark.parametrize("padding", ["none", "reflect"])
@pytest.mark.parametrize(("tile", "margin", "align"), [(64, 8, 4), (128, 24, 4), (96, 10, 8),
                                                       (64, 0, 1), (50, 7, 1)])
def test_every_pixel_written_exactly_once_with_its_margin(tile, margin, align, padding):
    for h, w in itertools.product(SIZES, SIZES[::3]):
        plan = plan_tiles((h, w), tile=tile, margin=margin, align=align, padding=padding)
        th, tw = plan.tile_shape
        m = plan.margin
        (top, _), (left, _) = plan.pad
        assert m >= margin and th % align == 0 and tw % align == 0
        if padding == "none":  # nothing beyond the border but the alignment zeros
            assert (top, left) == (0, 0) and plan.padded_shape == (
                -(-h // align) * align, -(-w // align) * align)
        count = np.zeros((h, w), dtype=np.int32)
        ph, pw = plan.padded_shape
        for t in plan.tiles:
            count[t.out] += 1
            # the tile lies inside the padded image, origins on the alignment grid
            assert 0 <= t.y and t.y + th <= ph and 0 <= t.x and t.x + tw <= pw
            assert t.y % align == 0 and t.x % align == 0
            # core pixels are at least `margin` from every tile edge but the padded border
            assert t.inner[0].start >= m or t.y == 0
            assert t.inner[1].start >= m or t.x == 0
            assert t.inner[0].stop <= th - m or t.y + th == ph
            assert t.inner[1].stop <= tw - m or t.x + tw == pw
            # the inner slice is the same pixels as the output slice
            assert t.inner[0].start + t.y - top == t.out[0].start
            assert t.inner[1].start + t.x - left == t.out[1].start
            assert t.inner[0].stop - t.inner[0].start == t.out[0].stop - t.out[0].start
        assert count.min() == 1 and count.max() == 1, (h, w)


def test_plan_is_deterministic_and_cheap():
    a = plan_tiles((2048, 4096), tile=512, margin=24, align=4, padding="reflect")
    b = plan_tiles((2048, 4096), tile=512, margin=24, align=4, padding="reflect")
    assert a == b
    assert max(a.tile_shape) <= 512
    assert a.work_ratio < 1.3  # MaxiMask's scheme: ~4
    inside = plan_tiles((2048, 4096), tile=512, margin=24, align=4)
    assert inside.work_ratio <= a.work_ratio
    small = plan_tiles((20, 30), tile=512, margin=24, align=4, padding="zero")
    assert len(small) == 1 and small.tile_shape == (20 + 48, 32 + 48)
    small = plan_tiles((20, 30), tile=512, margin=24, align=4)
    assert len(small) == 1 and small.tile_shape == (20, 32) and small.pad == ((0, 0), (0, 2))


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="positive"):
        plan_tiles((0, 5))
    with pytest.raises(ConfigError, match="margin"):
        plan_tiles((5, 5), margin=-1)
    with pytest.raises(ConfigError, match="batch size"):
        list(iter_batches(plan_tiles((5, 5)), 0))
    with pytest.raises(ConfigError, match="padding must be one of none, reflect, zero"):
        plan_tiles((5, 5), padding="wrap")


def test_batches_cover_each_tile_once():
    plan = plan_tiles((300, 500), tile=64, margin=8, align=4)
    batches = list(iter_batches(plan, 3))
    flat = [t for b in batches for t in b]
    assert flat == list(plan.tiles) and all(1 <= len(b) <= 3 for b in batches)


def test_padding_modes(rng):
    image = rng.normal(size=(5, 7)).astype(np.float32)
    plans = {p: plan_tiles(image.shape, tile=16, margin=3, align=1, padding=p)
             for p in ("none", "reflect", "zero")}
    assert_allclose(pad_image(image, plans["none"]), image)  # aligned: nothing added
    zero = pad_image(image, plans["zero"])
    (t, b), (lft, r) = plans["zero"].pad
    assert_allclose(zero[t:t + 5, lft:lft + 7], image)
    assert zero.sum() == pytest.approx(image.sum(), rel=1e-5)
    refl = pad_image(image, plans["reflect"])
    assert refl.shape == zero.shape
    assert_allclose(refl[t:t + 5, lft:lft + 7], image)
    assert_allclose(refl[t - 1, lft:lft + 7], image[1])
    assert_allclose(refl[t:t + 5, lft - 2], image[:, 2])
    line = pad_image(np.ones((1, 7), np.float32),
                     plan_tiles((1, 7), tile=16, margin=3, padding="reflect"))
    assert np.all(line == 1)
    with pytest.raises(ConfigError, match="padding must be one of"):
        pad_border(image, ((1, 1), (1, 1)), mode="wrap")


def test_pad_border_pads_a_stack_wider_than_the_images(rng):
    images = rng.normal(size=(3, 4, 6)).astype(np.float32)
    out = pad_border(images, ((9, 9), (9, 9)), mode="reflect")  # mirrored repeatedly
    assert out.shape == (3, 22, 24) and out.dtype == np.float32 and out.flags.c_contiguous
    for k in range(3):
        assert_allclose(out[k], pad_border(images[k], ((9, 9), (9, 9)), mode="reflect"))
        assert_allclose(out[k, 9:13, 9:15], images[k])
        assert_allclose(out[k, 8, 9:15], images[k, 1])
    assert_allclose(pad_border(images, ((2, 2), (2, 2)), mode="zero")[:, :2], 0.0)
    assert_allclose(pad_border(images, ((9, 9), (9, 9)), mode="reflect"), out)


def _tiled(net, padded, plan, torch):
    out = np.full((plan_channels(net),) + plan.shape, np.nan, dtype=np.float32)
    th, tw = plan.tile_shape
    with torch.inference_mode():
        for t in plan.tiles:
            x = torch.from_numpy(padded[t.y:t.y + th, t.x:t.x + tw].copy())[None, None]
            y = net(x)[0].numpy()
            out[(slice(None),) + t.out] = y[(slice(None),) + t.inner]
    return out


def plan_channels(net) -> int:
    return net.n_classes


@pytest.fixture
def unet():
    torch = pytest.importorskip("torch")
    nets = pytest.importorskip("mmx.model.nets")
    torch.manual_seed(0)
    net = nets.build_network("unet", n_classes=3, widths=(4, 6, 8), convs_per_level=1).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("shape", [(37, 53), (90, 61), (130, 140)])
def test_tiled_equals_whole_image_inference(unet, rng, shape):
    torch = pytest.importorskip("torch")
    from mmx.model.nets import receptive_field_margin

    margin = receptive_field_margin(unet)
    image = rng.normal(size=shape).astype(np.float32) * 3
    with torch.inference_mode():
        whole = unet(torch.from_numpy(image)[None, None])[0].numpy()
    for padding in ("none", "reflect"):
        plan = plan_tiles(shape, tile=2 * margin + 24, margin=margin, align=unet.stride,
                          padding=padding)
        assert len(plan) > 1 or shape == (37, 53)
        padded = pad_image(image, plan)
        tiled = _tiled(unet, padded, plan, torch)
        assert not np.isnan(tiled).any()
        if padding == "none":  # the network run on the bare image, edges included
            assert_allclose(tiled, whole, rtol=1e-4, atol=1e-5)
            continue
        with torch.inference_mode():
            whole_padded = unet(torch.from_numpy(padded)[None, None])[0].numpy()
        (t, _), (lft, _) = plan.pad
        # consistent padding: identical everywhere, edges included
        crop = whole_padded[:, t:t + shape[0], lft:lft + shape[1]]
        assert_allclose(tiled, crop, rtol=1e-4, atol=1e-5)
        # against the bare image (which pads itself to a multiple of the stride): identical
        # where no stride block within the margin crosses the image edge
        m = margin + unet.stride
        inner = (slice(None), slice(m, shape[0] - m), slice(m, shape[1] - m))
        assert_allclose(tiled[inner], whole[inner], rtol=1e-4, atol=1e-5)
