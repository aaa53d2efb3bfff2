"""The arithmetic that runs the network: which library, which number format, on this CPU.

A runtime takes a batch of normalised tiles ``(N, 1, H, W)`` float32 and returns the
logits ``(N, C, H, W)``, both as float32 numpy arrays, and says its network's ``stride``
(tiles are aligned to it). Four paths exist, each can be forced
(``Predictor(runtime=..., precision=...)``, ``$MMX_RUNTIME`` for ``mmx predict``):

``torch/float32``
    PyTorch eager, channels-last, BatchNorm folded: the reference.
``torch/bfloat16``
    the same with bfloat16 convolutions (autocast); fast only where the CPU has bf16 in
    hardware (``avx512_bf16``, ``amx_bf16``): elsewhere oneDNN emulates it, slower.
``onnxruntime/float32``
    the network exported once to ONNX (cached by content, :mod:`mmx.tracking.model_cache`) and run
    by ONNX Runtime's CPU kernels (MLAS); the same numbers as the reference to ~1e-5. Once
    the export is cached, a lazily loaded package (:func:`mmx.model.package.load_package`)
    runs without importing torch (~1.4 s of start-up, ``benchmarks/README.md``).
``onnxruntime/int8``
    the export quantised statically (int8 weights per channel, uint8 activations
    calibrated on a seeded synthetic sky frame), VNNI kernels where the CPU has them.

:func:`choose_path` picks one for ``auto``; ``benchmarks/README.md`` has the measurements
behind the choice and ``tests/test_runtimes.py`` the agreement of each path's masks with
the float32 reference.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from mmx.errors import ConfigError, ModelError
from mmx.io.atomic import atomic_write, atomic_write_text

__all__ = [
    "RUNTIMES",
    "PRECISIONS",
    "bf16_supported",
    "onnxruntime_available",
    "DEVICES",
    "resolve_device",
    "choose_path",
    "fold_batchnorm",
    "TorchRuntime",
    "OnnxRuntime",
    "make_runtime",
]

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")
DEVICES = ("auto", "cpu", "cuda")  #: plus ``cuda:N`` for one GPU of several
PRECISIONS = ("auto", "float32", "bfloat16", "int8")
_EXPORT_FORMAT = 1  # bump when the export or quantisation recipe changes
_SUPPORTED = {("torch", "float32"), ("torch", "bfloat16"), ("onnxruntime", "float32"),
              ("onnxruntime", "int8")}


def bf16_supported() -> bool:
    """True when the CPU runs bfloat16 convolutions natively (AVX-512 BF16 or AMX).

    oneDNN's own test (``_is_mkldnn_bf16_supported``) is also true where bf16 is only
    emulated (any AVX-512BW CPU), which is slower than float32: both must hold.
    """
    from mmx.model.hardware import native_bf16

    if not native_bf16():
        return False  # decided without importing torch
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def onnxruntime_available() -> bool:
    """True when ONNX Runtime (and ``onnx``, needed to quantise) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_device(device: str = "cpu") -> str:
    """The torch device a name means on this machine: ``"cpu"`` or ``"cuda[:N]"``.

    ``auto`` is the first CUDA GPU when torch sees one, else the CPU.

    Raises
    ------
    ConfigError
        On an unknown name, or CUDA asked for where torch has no usable GPU (a CPU build
        of torch, no driver, or no GPU ``N``).
    """
    name = str(device).strip().lower()
    base, _, index = name.partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise ConfigError(f"device must be one of {', '.join(DEVICES)} or cuda:N, "
                          f"got {device!r}")
    if base == "cpu" or (base == "auto" and not _nvidia_driver_possible()):
        return "cpu"  # decided without importing torch
    import torch

    available = torch.cuda.is_available()
    if base == "auto":
        return "cuda" if available else "cpu"
    if not available:
        build = torch.__version__
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "torch finds no CUDA driver or GPU")
        raise ConfigError(f"device {device!r}: no CUDA GPU usable ({why}: torch {build}); "
                          "expected device cpu or auto, or a CUDA build of torch on a machine "
                          "with an NVIDIA GPU")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ConfigError(f"device {device!r}: torch sees {count} CUDA GPU(s), numbered 0 to "
                          f"{count - 1}")
    return name


def _nvidia_driver_possible() -> bool:
    """False where no CUDA GPU can exist: macOS, or Linux without the NVIDIA kernel driver."""
    import sys

    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia").exists()
    return True  # elsewhere only torch can tell


def choose_path(runtime: str = "auto", precision: str = "auto", *,
                device: str = "cpu") -> tuple[str, str]:
    """Resolve ``auto`` into a ``(runtime, precision)`` path for this machine.

    ``auto``/``auto`` is ``torch/bfloat16`` where bf16 is native, else
    ``onnxruntime/float32`` (else ``torch/float32`` without ONNX Runtime). An explicit
    ``float32`` or ``bfloat16`` with ``runtime="auto"`` means PyTorch; ``int8`` means
    ONNX Runtime. On a GPU (``device`` a resolved ``cuda[:N]``) only PyTorch runs:
    ``auto`` is bfloat16 where the GPU has it, else float32.

    Raises
    ------
    ConfigError
        On an unknown name or a combination that does not exist (``torch/int8``,
        ``onnxruntime/bfloat16``, ONNX Runtime or int8 on a GPU), or ONNX Runtime asked
        for but not installed.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {precision!r}")
    if device.startswith("cuda"):
        if runtime == "onnxruntime" or precision == "int8":
            raise ConfigError(f"device {device}: only torch/float32 and torch/bfloat16 run on "
                              f"a GPU, got {runtime}/{precision}")
        if precision == "auto":
            import torch

            precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        return "torch", precision
    if precision == "auto":
        if runtime == "torch":
            precision = "bfloat16" if bf16_supported() else "float32"
        elif runtime == "onnxruntime":
            precision = "float32"
        elif bf16_supported():
            runtime, precision = "torch", "bfloat16"
        else:
            runtime = "onnxruntime" if onnxruntime_available() else "torch"
            precision = "float32"
    elif runtime == "auto":
        runtime = "onnxruntime" if precision == "int8" else "torch"
    if (runtime, precision) not in _SUPPORTED:
        raise ConfigError(f"no {precision} arithmetic in {runtime}; paths: "
                          + ", ".join(f"{r}/{p}" for r, p in sorted(_SUPPORTED)))
    if runtime == "onnxruntime" and not onnxruntime_available():
        raise ConfigError("runtime onnxruntime needs the onnxruntime and onnx packages "
                          "(pip install onnxruntime onnx)")
    return runtime, precision


def fold_batchnorm(net):
    """Return a copy of ``net`` (eval mode) with each BatchNorm folded into its convolution.

    Every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential``
    becomes one ``Conv2d`` with bias, and the BatchNorm an ``Identity``: the same function
    in eval mode (to float rounding), one pass less over each activation.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                with torch.no_grad():
                    module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return net


def _runnable(net):
    """``net``, or a :class:`ModelError` when the model has no network to run."""
    if net is None or not callable(net):
        raise ModelError("no network to run (a package without weights?)")
    return net


class TorchRuntime:
    """PyTorch eager: channels-last, folded BatchNorm, float32 or bfloat16 convolutions.

    Parameters
    ----------
    net : torch.nn.Module
        The network in eval mode (copied, never modified).
    precision : {"float32", "bfloat16"}
        Convolution arithmetic.
    threads : int, optional
        Intra-op threads (``torch.set_num_threads``, process-wide); default torch's own
        choice (the physical cores).
    channels_last, fold_bn : bool
        Memory layout for oneDNN's blocked kernels; BatchNorm folding.
    device : str
        A resolved torch device (:func:`resolve_device`): ``"cpu"`` or ``"cuda[:N]"``.
        Tiles are sent there and logits come back to the CPU.
    """

    def __init__(self, net, *, precision: str = "float32", threads: int | None = None,
                 channels_last: bool = True, fold_bn: bool = True, device: str = "cpu") -> None:
        import torch

        net = _runnable(net)
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.stride = int(getattr(net, "stride", 1) or 1)
        net = fold_batchnorm(net) if fold_bn else copy.deepcopy(net)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.name = f"torch/{precision}" + ("" if self.device.type == "cpu" else f"@{device}")
        self._bf16 = precision == "bfloat16"
        self._format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, C, H, W)`` float32 of a batch ``x`` ``(N, 1, H, W)`` float32."""
        import torch

        tiles = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        tiles = tiles.contiguous(memory_format=self._format)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self._bf16):
            return self.net(tiles).float().cpu().contiguous().numpy()


class _Export:
    """A plain-``forward(x)`` wrapper (the exporter's tracer cannot pass keyword-only args)."""

    @staticmethod
    def wrap(net):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)

        return Wrapper(net)


def _content_key(package) -> str:
    """Hash of the weights, architecture and export recipe: names a cached export.

    The weights are named by the SHA-256 of the file they were loaded from, when the
    package knows it (no torch needed), else hashed from the network's state.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = ""
    meta = package.meta
    digest = hashlib.sha256()
    head = {"architecture": getattr(meta, "architecture", ""),
            "arch_kwargs": getattr(meta, "arch_kwargs", {}), "format": _EXPORT_FORMAT,
            "torch": torch_version, "weights_sha256": package.weights_sha256}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    if not package.weights_sha256:
        for key, value in sorted(package.net.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def export_onnx(net, path: str | Path, *, stride: int = 1) -> Path:
    """Export ``net`` (BatchNorm folded) to an ONNX file with dynamic batch and tile size.

    ``asinh`` (inside every mmx network) is mapped to ONNX's ``Asinh``.
    """
    import torch

    torch.onnx.register_custom_op_symbolic(
        "aten::asinh", lambda g, x: g.op("Asinh", x), 9)
    model = _Export.wrap(fold_batchnorm(net)).eval()
    side = max(32, 4 * int(stride))
    example = torch.zeros(1, 1, side, side)
    axes = {0: "batch", 2: "height", 3: "width"}

    def write(tmp):
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(model, (example,), str(tmp), input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": axes, "logits": axes},
                              dynamo=False, opset_version=17)

    path = Path(path)
    atomic_write(path, write)
    return path


def _calibration_tiles(tile: int, *, n: int = 6, seed: int = 11) -> list[np.ndarray]:
    """Normalised tiles of a seeded synthetic sky (stars, cosmic rays, a column, a trail)."""
    from mmx.sky.normalize import normalize_image

    rng = np.random.default_rng(seed)
    size = 2 * tile
    image = rng.normal(1000.0, 12.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[-8:9, -8:9]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.8**2)).astype(np.float32)
    for _ in range(size * size // 4000):
        y, x = rng.integers(9, size - 9, 2)
        image[y - 8:y + 9, x - 8:x + 9] += psf * rng.uniform(50, 60000)
    for _ in range(size * size // 8000):
        y, x = rng.integers(0, size, 2)
        image[y, x:x + rng.integers(1, 4)] += rng.uniform(300, 5000)
    image[:, size // 3] += 400.0
    image[np.arange(size), (np.arange(size) // 2) % size] += 150.0
    image[: size // 8, : size // 8] = 65000.0  # saturated block
    norm = normalize_image(image)
    tiles = [norm[y:y + tile, x:x + tile] for y in (0, tile) for x in (0, tile)]
    tiles += [np.zeros((tile, tile), np.float32), norm[tile // 2:tile // 2 + tile,
                                                       tile // 2:tile // 2 + tile]]
    return [t[None, None].astype(np.float32) for t in tiles[:n]]


def quantize_onnx(fp32: str | Path, path: str | Path, *, tile: int,
                  reduce_range: bool = False) -> Path:
    """Quantise an exported network to int8 (QDQ, per-channel weights, static activations).

    ``reduce_range`` quantises weights to 7 bits, for CPUs whose int8 kernels saturate
    (x86 without VNNI, :attr:`mmx.model.hardware.CpuInfo.saturating_int8`).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    tiles = _calibration_tiles(tile)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": t} for t in tiles])

        def get_next(self):
            return next(self._it, None)

    def write(tmp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, reduce_range=reduce_range)

    path = Path(path)
    atomic_write(path, write)
    return path


class OnnxRuntime:
    """ONNX Runtime on the CPU, float32 or int8, from a cached export of the network.

    Parameters
    ----------
    package : ModelPackage
        The model: exported once per content (the export and its ``stride`` are cached);
        its network is built only to make the export.
    precision : {"float32", "int8"}
        Float32 export, or its static int8 quantisation.
    threads : int, optional
        Intra-op threads (default: ONNX Runtime's, the physical cores).

    Attributes
    ----------
    max_tile : int
        Largest tile side the :class:`~mmx.serving.inference.Predictor` uses by default
        here: ONNX Runtime's memory planner keeps more activations alive than PyTorch, so
        a 1024-px tile peaks at 1.13 GB for a 2048x4096 frame against 0.83 GB at 768 px,
        for 6 % more CPU time (benchmarks/README.md).
    """

    max_tile = 768

    def __init__(self, package, *, precision: str = "float32",
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        from mmx.tracking.model_cache import cache_root

        self.name = f"onnxruntime/{precision}"
        meta = package.meta
        folder = cache_root() / "onnx" / _content_key(package)
        fp32, about = folder / "model-float32.onnx", folder / "export.json"
        try:
            if not (fp32.is_file() and about.is_file()):
                net = _runnable(package.net)
                stride = int(getattr(net, "stride", 1) or 1)
                export_onnx(net, fp32, stride=stride)
                atomic_write_text(about, json.dumps({"stride": stride}))
            self.stride = int(json.loads(about.read_text())["stride"])
            model = fp32
            if precision == "int8":
                from mmx.model.hardware import cpu_info

                seven_bit = cpu_info().saturating_int8
                model = folder / (f"model-int8-tile{int(meta.tile)}"
                                  f"{'-7bit' if seven_bit else ''}.onnx")
                if not model.is_file():
                    quantize_onnx(fp32, model, tile=int(meta.tile), reduce_range=seven_bit)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any exporter failure is one clear error
            raise ModelError(f"cannot export the network to ONNX for {self.name} "
                             f"({type(exc).__name__}: {exc})") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or 0)  # 0: ONNX Runtime's own choice
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning, as OMP_WAIT_POLICY=PASSIVE for torch
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.path = model
        self.session = ort.InferenceSession(str(model), so,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, C, H, W)`` float32 of a batch ``x`` ``(N, 1, H, W)`` float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:  # the export assumes sides that are multiples of the stride
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
        out = self.session.run(None, {"x": x})[0]
        return np.ascontiguousarray(out[..., :h, :w])


def make_runtime(package, *, runtime: str, precision: str, threads: int | None = None,
                 channels_last: bool = True, fold_bn: bool = True, device: str = "cpu"):
    """Build the runtime of a resolved path (see :func:`choose_path`) on a resolved device."""
    if runtime == "onnxruntime":
        return OnnxRuntime(package, precision=precision, threads=threads)
    return TorchRuntime(package.net, precision=precision, threads=threads,
                        channels_last=channels_last, fold_bn=fold_bn, device=device)
