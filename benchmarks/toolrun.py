"""Shared helpers of the benchmarks: peer environments, MaxiMask's command, usage of a tool.

* :func:`measure` runs a command as the only child of a small wrapper process, which reads
  ``resource.getrusage(RUSAGE_CHILDREN)``: wall seconds, CPU seconds (user + system, all
  threads) and peak resident memory of the tool alone, start-up and imports included.
* :func:`ensure_venv` finds or builds a peer tool's own virtual environment (MaxiMask pulls
  TensorFlow, deepCR its own torch: neither belongs in mmx's environment).
* :func:`maximask_command` is the one place that knows how MaxiMask 1.4.1 is invoked.

Used by ``accuracy.py`` and ``predict_speed.py`` (see ``README.md``).
Run as a script only as the wrapper: ``python toolrun.py --_wrap -- CMD...``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Usage", "Peer", "measure", "ensure_venv", "maximask_command", "quiet_env",
           "MAXIMASK_PACKAGES", "DEEPCR_PACKAGES"]

log = logging.getLogger("benchmarks.toolrun")

#: what ``pip install`` gets for each peer (torch pinned exactly: pip then takes the local
#: CPU build instead of the newest CUDA build from the registry)
MAXIMASK_PACKAGES: tuple[str, ...] = ("maximask",)
DEEPCR_PACKAGES: tuple[str, ...] = ("torch==2.13.0", "deepcr", "matplotlib", "astropy")


@dataclass(frozen=True)
class Usage:
    """Resources one command used.

    Attributes
    ----------
    wall : float
        Wall-clock seconds.
    cpu : float
        CPU seconds, user + system, all threads and child processes.
    maxrss_mb : float
        Peak resident memory of the largest process, MiB.
    """

    wall: float
    cpu: float
    maxrss_mb: float


@dataclass(frozen=True)
class Peer:
    """A peer tool's environment: its Python (None if unavailable) and a note for reports."""

    name: str
    python: Path | None
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when the tool can be run."""
        return self.python is not None


def _wrapper(cmd: list[str]) -> int:
    """Run ``cmd`` as our only child and print its usage as one JSON line on stdout."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": proc.returncode, "wall": wall, "cpu": use.ru_utime + use.ru_stime,
                      "maxrss_mb": use.ru_maxrss / 1024.0, "stderr": proc.stderr[-3000:]}))
    return 0


def measure(cmd: Sequence[str], *, env: dict | None = None) -> Usage:
    """Run ``cmd`` in a fresh wrapper process and return what it used.

    Parameters
    ----------
    cmd : sequence of str
        The command, as for :func:`subprocess.run`.
    env : dict, optional
        Its environment (default: this process's).

    Raises
    ------
    RuntimeError
        If the command exits non-zero; the message holds the end of its stderr.
    """
    cmd = [str(c) for c in cmd]
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_wrap", "--", *cmd],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed (exit {result['rc']}): "
                           f"{result['stderr']}")
    return Usage(result["wall"], result["cpu"], result["maxrss_mb"])


def _probe(python: Path, code: str) -> bool:
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return proc.returncode == 0


def ensure_venv(
    name: str,
    folder: Path,
    *,
    packages: Sequence[str],
    probe: str,
    install: bool = True,
) -> Peer:
    """Find, or create and fill, the virtual environment of a peer tool.

    Parameters
    ----------
    name : str
        The tool, for notes and logs.
    folder : pathlib.Path
        The venv. An existing one is used if ``probe`` runs in it; otherwise the missing
        packages are installed into it (or it is created first).
    packages : sequence of str
        ``pip install`` arguments.
    probe : str
        Python code that succeeds only when the tool is usable (imports).
    install : bool
        False: never create or install, only probe.

    Returns
    -------
    Peer
        ``python`` is None when the tool cannot be used; ``note`` says why.
    """
    python = folder / "bin" / "python"
    if python.is_file() and _probe(python, probe):
        return Peer(name, python, f"{name}: venv {folder}")
    if not install:
        return Peer(name, None, f"{name} skipped: {folder} has no usable install and "
                                "installing was disabled")
    logfile = folder.parent / f"{folder.name}-install.log"
    try:
        if not python.is_file():
            base = shutil.which("python3") or sys.executable
            log.info("%s: creating venv %s", name, folder)
            subprocess.run([base, "-m", "venv", str(folder)], check=True, capture_output=True)
        log.info("%s: pip install %s into %s (log: %s)", name, " ".join(packages), folder,
                 logfile)
        with open(logfile, "w") as handle:
            subprocess.run([str(python), "-m", "pip", "install", *packages], check=True,
                           stdout=handle, stderr=subprocess.STDOUT)
    except (OSError, subprocess.CalledProcessError) as exc:
        return Peer(name, None, f"{name} skipped: could not install into {folder} ({exc}); "
                                f"see {logfile}")
    if not _probe(python, probe):
        return Peer(name, None, f"{name} skipped: installed into {folder} but `{probe}` "
                                "fails there")
    return Peer(name, python, f"{name}: venv {folder} (installed by this run)")


def maximask_command(
    venv_python: Path, target: Path, *, probabilities: bool = True, batch_size: int = 8
) -> list[str]:
    """The MaxiMask 1.4.1 command line for ``target`` (a file, directory or ``.list``).

    MaxiMask writes ``<name>.mask.fits`` next to each input. With ``probabilities`` it
    writes float32 per-class probabilities after its default prior correction
    (``--prior_modif`` is on by default), ``--proba_thresh False``; otherwise the single
    int16 bit mask at its default thresholds, as users run it.
    """
    exe = Path(venv_python).parent / "maximask"
    cmd = [str(exe), str(target), "--batch_size", str(int(batch_size))]
    cmd += ["--proba_thresh", "False"] if probabilities else ["--single_mask", "True"]
    return cmd


def quiet_env() -> dict:
    """Return this process's environment with TensorFlow's C++ logging and OpenMP spinning tamed."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--_wrap":
        sys.exit(_wrapper(sys.argv[3:]))
    sys.exit(f"usage: {sys.argv[0]} --_wrap -- CMD... (internal helper of the benchmarks)")
