"""What this machine's processor can do: model, vector extensions, native bfloat16.

bfloat16 arithmetic is only fast where the CPU has it in hardware (x86 ``avx512_bf16`` or
``amx_bf16``, Arm ``bf16``); elsewhere oneDNN emulates it and a training step measured
6.7x slower than float32 on an AVX2 EPYC. Everything that picks an arithmetic path asks
:func:`native_bf16`; nothing assumes it.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

from mmx.errors import ConfigError
from mmx.parallel import available_cpus

__all__ = ["CpuInfo", "cpu_info", "native_bf16", "training_precision", "TRAINING_PRECISIONS"]

#: Lightning precisions accepted by ``train.precision`` (``auto`` picks one per machine).
TRAINING_PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")

_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (AVX-512, AMX), aarch64 ("bf16")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot products (no saturation)
_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
                 "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni", "neon", "asimd", "sve", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    """The processor, as the operating system describes it.

    Attributes
    ----------
    model : str
        Model name (``/proc/cpuinfo``), else :func:`platform.processor`.
    machine : str
        Architecture (``x86_64``, ``aarch64``...).
    flags : frozenset of str
        Feature flags the kernel reports.
    cores : int
        Logical CPUs this process may use.
    """

    model: str
    machine: str
    flags: frozenset[str]
    cores: int

    @property
    def vector_extensions(self) -> list[str]:
        """The vector-arithmetic flags that matter for convolutions, in a fixed order."""
        return [f for f in _VECTOR_FLAGS if f in self.flags]

    @property
    def native_bf16(self) -> bool:
        """True when bfloat16 arithmetic is in hardware."""
        return any(f in self.flags for f in _BF16_FLAGS)

    @property
    def saturating_int8(self) -> bool:
        """True on an x86 CPU without VNNI, whose int8 kernels saturate at 16 bits.

        There ``vpmaddubsw`` adds two 8-bit products into 16 bits: weights need 7 bits.
        """
        return self.machine in ("x86_64", "AMD64") and not any(f in self.flags
                                                                for f in _VNNI_FLAGS)

    def describe(self) -> str:
        """One line: model, architecture, cores, vector extensions, bf16."""
        ext = " ".join(self.vector_extensions) or "none reported"
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        return f"{self.model} ({self.machine}, {self.cores} cores; {ext}; {bf16})"


def _read_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    model = ""
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "cpu model", "hardware"):
            model = value.strip()
        elif not flags and key in ("flags", "features"):
            flags = frozenset(value.split())
    return model, flags


@functools.cache
def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """Describe this machine's processor (``cpuinfo``: text of ``/proc/cpuinfo``, for tests)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    model, flags = _read_cpuinfo(cpuinfo)
    cores = available_cpus()
    return CpuInfo(model=model or platform.processor() or "unknown CPU",
                   machine=platform.machine(), flags=flags, cores=cores)


def native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (emulated bf16 is slower than float32)."""
    return cpu_info().native_bf16


def training_precision(requested: str, *, accelerator: str = "cpu") -> str:
    """The Lightning precision a fit uses: ``auto`` resolves per machine.

    ``auto`` is ``bf16-mixed`` on a GPU and on CPUs with native bfloat16, ``32-true`` on
    every other CPU. An explicit value is kept as it is (forcing a path for benchmarks).

    Raises
    ------
    ConfigError
        When ``requested`` is not one of :data:`TRAINING_PRECISIONS`.
    """
    if requested not in TRAINING_PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(TRAINING_PRECISIONS)}, "
                          f"got {requested!r}")
    if requested != "auto":
        return requested
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed"
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return "bf16-mixed"
    return "bf16-mixed" if native_bf16() else "32-true"
