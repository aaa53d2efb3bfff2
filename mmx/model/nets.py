"""Segmentation networks: normalised image ``(N, 1, H, W)`` -> per-class logits ``(N, C, H, W)``.

Every network here

* applies ``asinh`` to its input itself (the input is ``mmx.sky.normalize.normalize_image``'s
  output, in units of the sky noise), so packages need no separate preprocessing code;
* accepts any ``H, W``: the input is zero-padded (0 = sky) at the bottom/right to a
  multiple of :attr:`stride` (its total downsampling factor) and the output cropped back;
* returns deep-supervision outputs with ``forward(x, return_aux=True) -> (logits, aux)``,
  ``aux`` a list of full-resolution logit maps from intermediate decoder levels;
* has output layers whose biases :func:`init_output_bias` sets to the training priors'
  logits, so that training starts from the best constant prediction instead of p = 0.5;
* can hold a *significance gate* (``min_significance={"CR": 1.5}``, see
  :class:`SegmentationNet`): in eval mode a class's logit drops by :data:`GATE_DROP` where
  the pixel is not that many sky sigmas above the background (a cosmic ray adds charge);
* uses only per-pixel operations besides convolutions and pooling (BatchNorm, which is an
  affine map in eval mode), so a tile gives exactly the whole-image result wherever it
  holds the receptive field, provided its origin is a multiple of :attr:`stride`.
  :func:`receptive_field_margin` measures how far that is.

Architectures
-------------
``unet``
    A compact U-Net (default widths 12-24-48, 2 poolings, ~70k parameters) that trains
    to a useful model on two CPU cores in minutes.
``hfnet``
    The MaxiMask network (Paillassa, Bertin & Bouy 2020): a SegNet-like encoder-decoder
    with 5 pooling levels (max-pooling indices reused for unpooling), a side decoder at
    every decoder level whose full-resolution outputs are fused by a 1x1 convolution
    ("highly fused", Yang et al. 2018); 29 3x3 convolutions, 5.8 M parameters. For GPUs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmx.classes import ABBREVIATIONS, N_CLASSES
from mmx.errors import ConfigError

__all__ = [
    "GATE_DROP",
    "SegmentationNet",
    "ContextBlock",
    "DetailBlock",
    "UNet",
    "HFNet",
    "ARCHITECTURES",
    "build_network",
    "count_parameters",
    "init_output_bias",
    "prior_logits",
    "receptive_field_margin",
]


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _block(c_in: int, c_out: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += _conv_bn_relu(c_in if i == 0 else c_out, c_out)
    return nn.Sequential(*layers)


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))  # zeros = sky level after normalisation
    return x, h, w


def _upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


#: Logit drop of a gated pixel: its odds are divided by e^4 ~ 55, so p = 0.5 becomes 0.018.
#: On the validation split 4 gave the same TPR at FPR 1e-3 and 1e-4 as a drop of 30 (a hard
#: gate), and kept the AUC (0.992; 0.982 with 30): a confident network still outranks noise.
GATE_DROP = 4.0


class SegmentationNet(nn.Module):
    """Base of the networks: the eval-time significance gate on their logits.

    ``min_significance`` maps class abbreviations (:data:`mmx.classes.ABBREVIATIONS`
    order) to a significance ``t`` in sky sigmas: in eval mode, where the input ``x``
    (``(image - background) / noise``) is ``<= t``, that class's logit drops by
    :data:`GATE_DROP`. Training (train mode) never sees the gate, so the loss and the
    weights are those of the ungated network; validation, calibration, scoring and
    inference all see it. On the simulator's validation split the release network's
    cosmic-ray TPR at FPR 1e-3 went from 0.63 to 0.72 with ``{"CR": 1.5}``: in crowded
    cosmic-ray fields it gave sky pixels at the noise level a high p(CR). A gated pixel's
    odds are divided by ``exp(GATE_DROP)``, not zeroed: a likelihood ratio, not a veto.
    The gate is a buffer outside the state dict (weights files do not change).
    """

    n_classes: int
    gate_min_z: torch.Tensor

    def _init_gate(self, min_significance: dict[str, float] | None) -> None:
        self.register_buffer("gate_min_z", torch.empty(0), persistent=False)
        self.min_significance: dict[str, float] = {}
        self.set_min_significance(min_significance)

    def set_min_significance(self, min_significance: dict[str, float] | None) -> None:
        """Replace the gate (``None`` or ``{}``: none); see the class docstring."""
        gates = {str(k): float(v) for k, v in (min_significance or {}).items()}
        known = ABBREVIATIONS[:self.n_classes]
        bad = sorted(set(gates) - set(known))
        if bad:
            raise ConfigError(f"min_significance: unknown class(es) {', '.join(bad)} for a "
                              f"{self.n_classes}-class network; expected some of "
                              f"{', '.join(known)}")
        if any(not math.isfinite(v) for v in gates.values()):
            raise ConfigError(f"min_significance: thresholds must be finite sigmas, got {gates}")
        z = torch.full((self.n_classes,), -math.inf)
        for name, value in gates.items():
            z[known.index(name)] = value
        device = self.gate_min_z.device
        self.gate_min_z = (z[None, :, None, None] if gates else torch.empty(0)).to(device)
        self.min_significance = gates

    def _gated(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.min_significance:
            return logits
        below = (x <= self.gate_min_z.to(x.dtype)).to(logits.dtype)
        return logits - GATE_DROP * below


class ContextBlock(nn.Module):
    """Residual dilated convolutions: ``x + proj(convs(x))``, ``proj`` starting at zero.

    Placed at a U-Net's bottleneck, which has ``stride**2`` times fewer pixels than the
    image, it lets a pixel see further (the middle of a long cosmic-ray track, its ends).
    The zero-initialised 1x1 projection makes a network with a new block compute exactly
    what it did without it, so a trained network can be fine-tuned into it.
    """

    def __init__(self, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        dilations = [int(d) for d in dilations]
        if not dilations or min(dilations) < 1:
            raise ConfigError(f"unet context dilations must be one or more integers >= 1, "
                              f"got {dilations}")
        layers: list[nn.Module] = []
        for d in dilations:
            layers += [nn.Conv2d(channels, channels, kernel_size=3, padding=d, dilation=d,
                                 bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)  # type: ignore[arg-type]  # present: bias=True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the block's correction."""
        return x + self.proj(self.convs(x))


class DetailBlock(nn.Module):
    """Full-resolution correction of the logits: ``proj(convs([features, image]))``.

    It sees the last decoder level's features next to the (``asinh``-scaled) image itself,
    with ``channels`` channels where the U-Net's first level has few: capacity for the
    pixel-scale shapes (a 1-px cosmic ray beside a hot pixel or an undersampled star core).
    Its 1x1 projection starts at zero, so, like :class:`ContextBlock`, a trained network
    with a new block computes exactly what it did and can be fine-tuned into it.
    """

    def __init__(self, c_features: int, channels: int, n_classes: int, n_convs: int) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigError(f"unet detail must be a positive channel count, got {channels}")
        self.convs = _block(c_features + 1, channels, n_convs)
        self.proj = nn.Conv2d(channels, n_classes, kernel_size=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)  # type: ignore[arg-type]  # present: bias=True

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The correction to add to the logits."""
        return self.proj(self.convs(torch.cat([features, image], dim=1)))


class UNet(SegmentationNet):
    """Compact U-Net with BatchNorm, nearest-neighbour upsampling and skip concatenation.

    Parameters
    ----------
    n_classes : int
        Output planes.
    widths : sequence of int
        Channels per level, full resolution first; ``len(widths) - 1`` 2x2 poolings.
    convs_per_level : int
        3x3 convolutions per encoder and decoder level.
    asinh_scale : float
        The network sees ``asinh(x / asinh_scale)``.
    min_significance : dict, optional
        Significance gate per class (:class:`SegmentationNet`).
    context : sequence of int
        Dilations of extra 3x3 convolutions at the bottleneck (:class:`ContextBlock`),
        each widening the receptive-field radius by ``dilation * stride`` px; empty: none.
    detail : int
        Channels of a full-resolution :class:`DetailBlock` on the last decoder level and
        the image (``convs_per_level`` 3x3 convolutions); 0: none.
    """

    def __init__(
        self,
        *,
        n_classes: int = N_CLASSES,
        widths: Sequence[int] = (12, 24, 48),
        convs_per_level: int = 2,
        asinh_scale: float = 1.0,
        min_significance: dict[str, float] | None = None,
        context: Sequence[int] = (),
        detail: int = 0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ConfigError(f"unet widths must be >= 2 positive channel counts, got {widths}")
        if convs_per_level < 1:
            raise ConfigError(f"unet convs_per_level must be >= 1, got {convs_per_level}")
        self.n_classes = n_classes
        self._init_gate(min_significance)
        self.asinh_scale = float(asinh_scale)
        self.stride = 2 ** (len(widths) - 1)
        self.encoders = nn.ModuleList()
        c_in = 1
        for w in widths:
            self.encoders.append(_block(c_in, w, convs_per_level))
            c_in = w
        # None without context: the state dict (weights file) is then what it always was
        self.context = ContextBlock(c_in, context) if len(context) else None
        self.decoders = nn.ModuleList()
        self.aux_heads = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            self.aux_heads.append(nn.Conv2d(c_in, n_classes, kernel_size=1))
            self.decoders.append(_block(c_in + widths[level], widths[level], convs_per_level))
            c_in = widths[level]
        self.head = nn.Conv2d(c_in, n_classes, kernel_size=1)
        self.detail = (DetailBlock(c_in, int(detail), n_classes, convs_per_level)
                       if detail else None)

    def forward(
        self, x: torch.Tensor, *, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(N, C, H, W)``; with ``return_aux`` also the deep-supervision logits."""
        z = x
        x, h, w = _pad_to(torch.asinh(x / self.asinh_scale), self.stride)
        image, full = x, x.shape[-2:]
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                x = F.max_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        if self.context is not None:
            x = self.context(x)
        aux = []
        for dec, aux_head, skip in zip(self.decoders, self.aux_heads, skips[-2::-1], strict=True):
            if return_aux:
                aux.append(aux_head(x))
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = dec(torch.cat([x, skip], dim=1))
        out = self.head(x)
        if self.detail is not None:
            out = out + self.detail(x, image)
        logits = self._gated(out[..., :h, :w], z)
        if not return_aux:
            return logits
        return logits, [_upsample_to(a, full)[..., :h, :w] for a in aux]


class HFNet(SegmentationNet):
    """MaxiMask's highly fused SegNet: 5 poolings, side decoders fused at full resolution.

    Parameters
    ----------
    n_classes : int
        Output planes.
    widths : sequence of int
        Channels of the 5 encoder blocks (decoder mirrors them).
    convs : sequence of int
        3x3 convolutions per encoder block (decoder mirrors them); the default
        ``(2, 2, 3, 3, 2)`` with the five 3x3 side heads gives 29 3x3 convolutions.
    asinh_scale : float
        The network sees ``asinh(x / asinh_scale)``.
    min_significance : dict, optional
        Significance gate per class (:class:`SegmentationNet`).
    """

    def __init__(
        self,
        *,
        n_classes: int = N_CLASSES,
        widths: Sequence[int] = (32, 64, 128, 256, 224),
        convs: Sequence[int] = (2, 2, 3, 3, 2),
        asinh_scale: float = 1.0,
        min_significance: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        widths, convs = [int(w) for w in widths], [int(c) for c in convs]
        if len(widths) != len(convs) or len(widths) < 2:
            raise ConfigError(f"hfnet widths {widths} and convs {convs} must have the same "
                              "length >= 2")
        self.n_classes = n_classes
        self._init_gate(min_significance)
        self.asinh_scale = float(asinh_scale)
        self.stride = 2 ** len(widths)
        self.encoders = nn.ModuleList()
        c_in = 1
        for w, n in zip(widths, convs, strict=True):
            self.encoders.append(_block(c_in, w, n))
            c_in = w
        # decoder level k mirrors encoder level k: unpool, n-1 convs at width w_k, one conv
        # down to w_{k-1} (the last level keeps w_0); a 3x3 side head per level
        self.decoders = nn.ModuleList()
        self.sides = nn.ModuleList()
        for k in range(len(widths) - 1, -1, -1):
            w, n = widths[k], convs[k]
            w_out = widths[k - 1] if k else widths[0]
            layers: list[nn.Module] = []
            for _ in range(n - 1):
                layers += _conv_bn_relu(w, w)
            layers += _conv_bn_relu(w, w_out)
            self.decoders.append(nn.Sequential(*layers))
            self.sides.append(nn.Conv2d(w_out, n_classes, kernel_size=3, padding=1))
        self.fuse = nn.Conv2d(n_classes * len(widths), n_classes, kernel_size=1)

    def forward(
        self, x: torch.Tensor, *, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Fused logits ``(N, C, H, W)``; with ``return_aux`` also each side output."""
        z = x
        x, h, w = _pad_to(torch.asinh(x / self.asinh_scale), self.stride)
        full = x.shape[-2:]
        pools = []
        for enc in self.encoders:
            x = enc(x)
            size = x.shape[-2:]
            x, idx = F.max_pool2d(x, 2, return_indices=True)
            pools.append((idx, size))
        sides = []
        for dec, side, (idx, size) in zip(self.decoders, self.sides, pools[::-1], strict=True):
            x = dec(F.max_unpool2d(x, idx, (2, 2), output_size=size))
            sides.append(_upsample_to(side(x), full))
        logits = self._gated(self.fuse(torch.cat(sides, dim=1))[..., :h, :w], z)
        if not return_aux:
            return logits
        return logits, [s[..., :h, :w] for s in sides]


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"unet": UNet, "hfnet": HFNet}


def build_network(name: str, *, n_classes: int = N_CLASSES, **kwargs) -> nn.Module:
    """Build the network called ``name`` in :data:`ARCHITECTURES`.

    Raises
    ------
    ConfigError
        On an unknown name or arguments the architecture does not take.
    """
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; expected one of "
                          f"{', '.join(ARCHITECTURES)}") from None
    try:
        return cls(n_classes=n_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments {kwargs} for architecture {name!r}: {exc}") from None


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def receptive_field_margin(
    net: nn.Module,
    *,
    n_trials: int = 2,
    seed: int = 0,
    start_size: int = 128,
    max_size: int = 2048,
    round_to: int | None = None,
) -> int:
    """Measure the receptive-field radius of ``net``: the tile overlap inference needs.

    The gradient of a ``stride x stride`` block of output pixels (all classes) is taken
    with respect to the input, in eval mode and double precision, for ``n_trials`` random
    inputs; the radius is the largest Chebyshev distance from the block to an input pixel
    with a non-zero gradient. Covering a whole block covers every alignment of the
    pooling grid. The input grows until the footprint stays clear of its edges.

    Parameters
    ----------
    net : torch.nn.Module
        A network of this module (it needs a ``stride`` attribute); left unchanged.
    n_trials : int
        Random inputs whose footprints are united (ReLUs can hide a path in one).
    seed : int
        Seed of the ``torch.Generator`` that draws the inputs.
    start_size, max_size : int
        First and largest input side tried, pixels.
    round_to : int, optional
        Round the radius up to a multiple of this; default the net's ``stride``, so that
        tiles stepping by ``tile - 2 * margin`` stay aligned on the pooling grid.

    Returns
    -------
    int
        Margin in pixels: an output pixel at least this far from a tile's inner edges is
        identical to the whole-image result.

    Raises
    ------
    ConfigError
        If the footprint still reaches the edges of a ``max_size`` input, or is empty.
    """
    stride = int(getattr(net, "stride", 1))
    round_to = stride if round_to is None else int(round_to)
    probe = copy.deepcopy(net).double().eval()
    for p in probe.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    size = max(start_size, 4 * stride)
    size += (-size) % stride
    while size <= max_size:
        c0 = (size // 2) // stride * stride
        footprint = torch.zeros(size, size, dtype=torch.bool)
        for _ in range(n_trials):
            x = torch.randn(1, 1, size, size, generator=gen, dtype=torch.float64) * 3.0
            x.requires_grad_(True)
            out = probe(x)
            out[..., c0:c0 + stride, c0:c0 + stride].sum().backward()
            assert x.grad is not None  # x requires grad and reaches the output
            footprint |= x.grad[0, 0] != 0
        if not footprint.any():
            raise ConfigError("the network's output does not depend on its input (every "
                              "path is blocked, as by dead ReLUs after a diverged fit): it "
                              "has no receptive field; retrain with a lower learning rate")
        ys, xs = torch.nonzero(footprint, as_tuple=True)
        touches = ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1
        if not touches:
            radius = max(int(c0 - ys.min()), int(ys.max() - (c0 + stride - 1)),
                         int(c0 - xs.min()), int(xs.max() - (c0 + stride - 1)), 0)
            return int(math.ceil(radius / round_to) * round_to) if round_to > 1 else radius
        size *= 2
    raise ConfigError(f"receptive field of {type(net).__name__} exceeds the largest probe "
                      f"({max_size} px); raise max_size")


def prior_logits(priors: Sequence[float] | torch.Tensor, *, clip: float = 12.0) -> torch.Tensor:
    """``logit(p)`` of class priors, clipped to ``[-clip, clip]`` (``p = 0`` gives ``-clip``).

    Parameters
    ----------
    priors : sequence of float
        Probabilities ``(C,)`` in [0, 1].
    clip : float
        Largest magnitude of the result.
    """
    p = torch.as_tensor(priors, dtype=torch.float64)
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ConfigError(f"priors must be in [0, 1], got {p.tolist()}")
    return torch.logit(p).clamp(-clip, clip).float()


@torch.no_grad()
def init_output_bias(net: nn.Module, bias: Sequence[float] | torch.Tensor) -> nn.Module:
    """Make every output of ``net`` (main and deep-supervision) start at logits ``bias``.

    With a per-class constant equal to ``logit`` of the class's training prior
    (:func:`prior_logits`) the untrained network already predicts the priors: the loss
    starts at the entropy of the labels instead of ``log 2`` per class, and the first
    steps learn features instead of 14 biases.

    ``unet``: the biases of the 1x1 main and auxiliary heads are set to ``bias``.
    ``hfnet``: each side head's bias is set to ``bias`` and the fusion's bias to
    ``bias - W b``, with ``W b`` the fusion's response to sides equal to ``bias``.

    Parameters
    ----------
    net : UNet or HFNet
        Network of this module; changed in place.
    bias : sequence of float
        ``(C,)`` logits, one per output plane.

    Returns
    -------
    torch.nn.Module
        ``net``.

    Raises
    ------
    ConfigError
        If ``bias`` does not hold one value per output plane, or ``net`` is not known.
    """
    b = torch.as_tensor(bias, dtype=torch.float32)
    n = int(getattr(net, "n_classes", -1))
    if b.shape != (n,):
        raise ConfigError(f"need one output bias per class ({n}), got shape {tuple(b.shape)}")
    if isinstance(net, UNet):
        for head in [net.head, *net.aux_heads]:
            head.bias.copy_(b.to(head.bias))
    elif isinstance(net, HFNet):
        for side in net.sides:
            assert isinstance(side, nn.Conv2d) and side.bias is not None
            side.bias.copy_(b.to(side.bias))
        w = net.fuse.weight[:, :, 0, 0]  # (C, C * n_sides)
        assert net.fuse.bias is not None
        net.fuse.bias.copy_(b.to(w) - w @ b.to(w).repeat(len(net.sides)))
    else:
        raise ConfigError(f"init_output_bias does not know {type(net).__name__}")
    return net
