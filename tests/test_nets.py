"""Networks: output shapes at any size, deep supervision, output biases, receptive field."""

from __future__ import annotations

import math

import pytest
import torch

from mmx.classes import N_CLASSES
from mmx.errors import ConfigError
from mmx.model.nets import (
    ARCHITECTURES,
    GATE_DROP,
    ContextBlock,
    DetailBlock,
    HFNet,
    build_network,
    count_parameters,
    init_output_bias,
    prior_logits,
    receptive_field_margin,
)

SMALL = {"unet": {"widths": (4, 8, 8)}, "hfnet": {"widths": (4, 4, 4, 4, 4), "convs": (1,) * 5}}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (5, 70)])
def test_any_size_gives_full_resolution_logits(name, shape):
    torch.manual_seed(0)
    net = build_network(name, n_classes=N_CLASSES, **SMALL[name]).eval()
    x = torch.randn(2, 1, *shape)
    with torch.no_grad():
        logits = net(x)
        again, aux = net(x, return_aux=True)
    assert logits.shape == (2, N_CLASSES, *shape)
    assert torch.allclose(logits, again)
    assert len(aux) >= 2 and all(a.shape == logits.shape for a in aux)


def test_hfnet_is_maximask_sized():
    net = HFNet()
    assert 5.5e6 < count_parameters(net) < 6.0e6
    n3 = sum(1 for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert n3 == 29 and net.stride == 32


def test_build_network_rejects_unknown_names_and_arguments():
    with pytest.raises(ConfigError, match="unknown architecture 'segnet'"):
        build_network("segnet", n_classes=3)
    with pytest.raises(ConfigError, match="bad arguments"):
        build_network("unet", n_classes=3, depth=4)
    with pytest.raises(ConfigError, match="widths"):
        build_network("unet", n_classes=3, widths=[8])


def _random_unet(seed: int = 0):
    torch.manual_seed(seed)
    net = build_network("unet", n_classes=3, widths=(4, 8, 8))
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():  # non-trivial eval-mode BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.double().eval()


def _tile_mismatch(net, image, margin: int, tile: int) -> float:
    """Largest difference between tile cores and the whole-image result."""
    whole = net(image)
    worst = 0.0
    h, w = image.shape[-2:]
    for y in range(0, h - tile + 1, net.stride):
        for x in range(0, w - tile + 1, net.stride):
            out = net(image[..., y:y + tile, x:x + tile])
            core = out[..., margin:tile - margin, margin:tile - margin]
            ref = whole[..., y + margin:y + tile - margin, x + margin:x + tile - margin]
            worst = max(worst, float((core - ref).abs().max()))
    return worst


def test_margin_makes_tiles_match_the_whole_image():
    net = _random_unet()
    margin = receptive_field_margin(net)
    raw = receptive_field_margin(net, round_to=1)
    assert margin % net.stride == 0 and raw <= margin < raw + net.stride
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(1, 1, 96, 96, generator=gen, dtype=torch.float64) * 3
    tile = 2 * margin + 8
    with torch.no_grad():
        assert _tile_mismatch(net, image, margin, tile) < 1e-9
        # the margin is not wastefully large: half of it is not enough
        assert _tile_mismatch(net, image, raw // 2, tile) > 1e-6


def test_a_network_blind_to_its_input_has_no_margin():
    net = _random_unet()
    with torch.no_grad():  # the first convolution's filters zero: nothing of the input gets through
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                break
    with pytest.raises(ConfigError, match="output does not depend on its input"):
        receptive_field_margin(net)


def test_margin_leaves_the_network_unchanged():
    net = _random_unet().float().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    receptive_field_margin(net)
    assert net.training and next(net.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _grown_unet(block: str, **kwargs):
    """A random small U-Net, the same with a zero-started ``block`` added, and an input.

    Checks that the new network holds the old one's weights plus the block's, and that it
    computes exactly the same function.
    """
    base = _random_unet(seed=3)
    torch.manual_seed(3)
    grown = build_network("unet", n_classes=3, widths=(4, 8, 8), **kwargs).double().eval()
    added = set(grown.state_dict()) - set(base.state_dict())
    assert added and set(grown.state_dict()) >= set(base.state_dict())
    assert all(k.startswith(f"{block}.") for k in added)
    grown.load_state_dict(base.state_dict(), strict=False)
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64) * 3
    with torch.no_grad():
        assert torch.equal(grown(x), base(x))  # zero projection: the same function
        torch.nn.init.normal_(getattr(grown, block).proj.weight, std=0.1)
    return base, grown, x


def _random_image(side: int) -> torch.Tensor:
    return torch.randn(1, 1, side, side, generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64) * 3


def test_context_block_starts_as_the_identity_and_widens_the_receptive_field():
    base, wide, x = _grown_unet("context", context=(1, 2))
    with torch.no_grad():
        assert not torch.allclose(wide(x), base(x))
    # dilations 1 + 2 at stride 4 widen the radius by (1 + 2) * 4 px
    assert receptive_field_margin(wide, round_to=1) == receptive_field_margin(base, round_to=1) + 12
    margin = receptive_field_margin(wide)
    with torch.no_grad():
        assert _tile_mismatch(wide, _random_image(128), margin, 2 * margin + 8) < 1e-9
    with pytest.raises(ConfigError, match="context dilations must be one or more integers >= 1"):
        build_network("unet", n_classes=3, widths=(4, 8), context=(0,))
    with pytest.raises(ConfigError, match="got \\[\\]"):
        ContextBlock(4, [])


def test_detail_block_starts_as_the_identity_and_sees_single_pixels():
    base, fine, x = _grown_unet("detail", detail=6)
    with torch.no_grad():
        changed = fine(x) - base(x)
        assert (changed != 0).double().mean() > 0.5  # a correction wherever a ReLU opens
        # the block sees the image itself: one pixel moves the correction all around it
        y = x.clone()
        y[..., 30, 30] += 50.0
        moved = (fine(y) - base(y) - changed).abs().amax(dim=(0, 1)) > 0
    assert moved[28:33, 28:33].all()
    margin = receptive_field_margin(fine)
    with torch.no_grad():  # four tiles
        assert _tile_mismatch(fine, _random_image(2 * margin + 8 + fine.stride), margin,
                              2 * margin + 8) < 1e-9
    with pytest.raises(ConfigError, match="detail must be a positive channel count, got -2"):
        build_network("unet", n_classes=3, widths=(4, 8), detail=-2)
    with pytest.raises(ConfigError, match="got 0"):
        DetailBlock(4, 0, 3, 2)


def test_prior_logits_are_clipped_logits():
    b = prior_logits([0.5, 0.1, 0.0, 1.0], clip=10.0)
    assert b.tolist() == pytest.approx([0.0, math.log(0.1 / 0.9), -10.0, 10.0], rel=1e-6)
    with pytest.raises(ConfigError, match=r"priors must be in \[0, 1\]"):
        prior_logits([0.5, 1.5])


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_output_bias_makes_every_output_start_at_the_priors(name):
    torch.manual_seed(0)
    net = build_network(name, n_classes=3, **SMALL[name])
    bias = prior_logits([0.5, 0.01, 1e-4])
    assert init_output_bias(net, bias) is net
    # with the output layers' weights at 0 every output is exactly the bias
    heads = [net.head, *net.aux_heads] if name == "unet" else list(net.sides)
    with torch.no_grad():
        for head in heads:
            head.weight.zero_()
        logits, aux = net(torch.randn(2, 1, 40, 40), return_aux=True)
    for out in (logits, *aux):
        assert torch.allclose(out, bias[None, :, None, None].expand_as(out), atol=1e-5)
    with pytest.raises(ConfigError, match=r"one output bias per class \(3\), got shape \(2,\)"):
        init_output_bias(net, [0.0, 0.0])


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_significance_gate_lowers_only_its_class_and_only_in_eval(name):
    torch.manual_seed(0)
    plain = build_network(name, n_classes=N_CLASSES, **SMALL[name]).eval()
    gated = build_network(name, n_classes=N_CLASSES, min_significance={"CR": 1.5},
                          **SMALL[name]).eval()
    gated.load_state_dict(plain.state_dict())  # the gate is not in the state dict
    x = torch.randn(1, 1, 40, 48) * 2.0
    with torch.no_grad():
        a, b = plain(x), gated(x)
        diff = a - b
        below = (x[0, 0] <= 1.5)
        assert below.any() and (~below).any()
        assert torch.allclose(diff[0, 0][below], torch.tensor(GATE_DROP), atol=1e-5)
        assert torch.all(diff[0, 0][~below] == 0) and torch.all(diff[0, 1:] == 0)
        assert torch.equal(plain.train()(x), gated.train()(x))  # training never sees it
    gated.set_min_significance(None)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), gated.eval()(x))


def test_significance_gate_refuses_unknown_classes_and_infinite_values():
    with pytest.raises(ConfigError, match="unknown class.*XX"):
        build_network("unet", n_classes=N_CLASSES, widths=(4, 8), min_significance={"XX": 1})
    with pytest.raises(ConfigError, match="unknown class.*BG"):  # a 3-class net has no BG
        build_network("unet", n_classes=3, widths=(4, 8), min_significance={"BG": 1})
    with pytest.raises(ConfigError, match="finite"):
        build_network("unet", n_classes=3, widths=(4, 8), min_significance={"CR": math.inf})
