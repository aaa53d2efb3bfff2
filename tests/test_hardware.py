"""CPU detection decides the arithmetic: emulated bf16 must never be chosen by default."""

import pytest

from mmx.errors import ConfigError
from mmx.model import hardware

ZEN3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
ZEN4 = ("model name\t: AMD EPYC 9B14\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_bf16\n")
ARM = "Features\t: fp asimd sve bf16\nCPU part\t: 0xd4f\n"


@pytest.mark.parametrize(("text", "bf16", "ext"), [
    (ZEN3, False, ["sse4_2", "avx", "avx2", "fma"]),
    (ZEN4, True, ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"]),
    (ARM, True, ["asimd", "sve", "bf16"]),
])
def test_cpuinfo_is_read(text, bf16, ext):
    info = hardware.cpu_info(text)
    assert info.native_bf16 is bf16
    assert info.vector_extensions == ext
    assert ("native bf16" if bf16 else "no native bf16") in info.describe()


def test_int8_saturates_on_x86_without_vnni():
    zen3 = hardware.CpuInfo(model="EPYC", machine="x86_64", flags=frozenset({"avx2"}), cores=2)
    xeon = hardware.CpuInfo(model="Xeon", machine="x86_64",
                            flags=frozenset({"avx2", "avx512f", "avx512_vnni"}), cores=2)
    arm = hardware.CpuInfo(model="Neoverse", machine="aarch64", flags=frozenset({"asimd"}),
                           cores=2)
    assert zen3.saturating_int8
    assert not xeon.saturating_int8
    assert not arm.saturating_int8


@pytest.mark.parametrize(("native", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_auto_precision_follows_the_cpu(monkeypatch, native, expected):
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    assert hardware.training_precision("auto", accelerator="cpu") == expected
    assert hardware.training_precision("32-true", accelerator="cpu") == "32-true"
    assert hardware.training_precision("bf16-mixed", accelerator="cpu") == "bf16-mixed"
    assert hardware.training_precision("auto", accelerator="gpu") == "bf16-mixed"


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="train.precision must be one of .*got 'fp8'"):
        hardware.training_precision("fp8")


def test_this_machine_is_described():
    info = hardware.cpu_info()
    assert info.cores >= 1 and info.model
    assert info.native_bf16 == hardware.native_bf16()
