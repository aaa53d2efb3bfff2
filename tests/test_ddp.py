"""Training across processes: Lightning DDP on 2 CPU processes (gloo), the README's GPU path.

Lightning's ``ddp`` strategy starts the other ranks by re-running the launching script,
so each fit here runs as its own small script (as ``pipelines/train.py`` does), on tiny
shard sets built in ``tmp_path`` with a temporary sqlite MLflow store.

DDP with ``batch_size=B`` on 2 ranks averages the gradients of 2 B crops per step; the
same crops in one process with ``batch_size=2B`` give the same step up to BatchNorm's
per-rank statistics (``mmx.training.fit`` does not use SyncBatchNorm) and the per-rank
normalisation of the loss by its valid pixels, so the match is not to float precision.
The test checks the DDP update is near that of the single-process fit on all crops and
much further from a fit on one rank's half alone: gradients really are shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mmx.classes import label_bit  # noqa: E402
from mmx.io.shards import Sample, ShardWriter  # noqa: E402

SIZE = 48

_SCRIPT = """
import json, sys
from mmx.training.fit import train
args = json.loads(sys.argv[1])
out = train(args["cfg"], train_dir=args["train"], val_dir=args["val"],
            model_dir=args["model"], results_dir=args["results"],
            tracking_uri=args["uri"], root=args["root"])
print("RESULT", json.dumps(out))
"""


def _fake_set(folder: Path, *, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cr, bg = label_bit("CR"), label_bit("BG")
    with ShardWriter(folder, shard_size=4) as writer:
        for i in range(n):
            image = (100.0 + 5.0 * rng.standard_normal((SIZE, SIZE))).astype(np.float32)
            labels = np.full((SIZE, SIZE), bg, dtype=np.uint16)
            ys, xs = rng.integers(2, SIZE - 2, size=(2, 8))
            image[ys, xs] += 400.0
            labels[ys, xs] = cr
            writer.add(Sample(image, labels, np.zeros((SIZE, SIZE), np.uint8), {"index": i}))


def _cfg(**over) -> dict:
    cfg = {
        "architecture": "unet", "arch_kwargs": {"widths": [4, 8]}, "seed": 3, "crop": 32,
        "val_crop": None, "augment": False, "mesh": 16, "batch_size": 2, "val_batch_size": 2,
        "num_workers": 0, "num_threads": 1, "cache_mb": 16, "optimizer": "adam",
        "lr": 1e-3, "weight_decay": 0.0, "lr_schedule": "none", "aux_weight": 0.5,
        "max_epochs": 1, "max_steps": 2, "max_time_min": None, "limit_train_batches": 1.0,
        "limit_val_batches": 1.0, "accelerator": "cpu", "devices": 1, "strategy": "auto",
        "precision": "32-true", "metric_bins": 50, "checkpoint_dir": "checkpoints",
        "resume": False, "tile": 64, "log_every_n_steps": 1, "progress_bar": False,
    }
    cfg.update(over)
    return cfg


def _fit(tmp_path: Path, name: str, shards: dict, **over) -> tuple[dict, dict, str]:
    """Run one fit as a script; the trained weights are read from its ``last.ckpt``."""
    root = tmp_path / name
    root.mkdir()
    args = {"cfg": _cfg(**over), "train": str(shards["train"]), "val": str(shards["val"]),
            "model": str(root / "model"), "results": str(root / "results"),
            "uri": f"sqlite:///{root / 'mlflow.db'}", "root": str(root)}
    script = root / "fit.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True,
                         text=True, timeout=600, cwd=root, env=env)
    (root / "stderr.log").write_text(res.stderr)
    ckpt = root / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), res.stderr[-3000:]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    weights = dict(state["state_dict"])
    lines = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(lines[0].removeprefix("RESULT ")) if lines else {}
    out["returncode"], out["step"] = res.returncode, int(state["global_step"])
    return out, weights, res.stderr


def _flat(state: dict) -> torch.Tensor:
    """The network's trainable weights (not BatchNorm statistics, not the loss counters)."""
    return torch.cat([v.flatten().double() for k, v in sorted(state.items())
                      if k.startswith("net.") and v.dtype.is_floating_point
                      and "running" not in k])


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    shards = {}
    for k, (split, n) in enumerate((("train", 8), ("val", 2))):
        shards[split] = tmp_path / "derived" / split
        _fake_set(shards[split], n=n, seed=200 + k)
    _, w0, _ = _fit(tmp_path, "zero", shards, lr=1e-12)  # the initial weights, to 1e-12
    ddp, w_ddp, ddp_err = _fit(tmp_path, "ddp", shards, strategy="ddp", devices=2,
                               batch_size=2)
    one, w_one, _ = _fit(tmp_path, "one", shards, batch_size=4)
    half, w_half, _ = _fit(tmp_path, "half", shards, batch_size=2)
    assert one["returncode"] == half["returncode"] == 0
    assert "Starting with 2 processes" in ddp_err and "distributed_backend=gloo" in ddp_err
    assert ddp["step"] == one["step"] == 2
    step_one = _flat(w_one) - _flat(w0)
    step_ddp = _flat(w_ddp) - _flat(w0)
    step_half = _flat(w_half) - _flat(w0)
    assert step_one.norm() > 0
    gap_ddp = float((step_ddp - step_one).norm() / step_one.norm())
    gap_half = float((step_half - step_one).norm() / step_one.norm())
    print(f"relative gap to the 1-process step: ddp {gap_ddp:.4f}, half {gap_half:.4f}")
    # measured: ddp 0.54, half 1.01 (BatchNorm statistics are per rank; Adam's first
    # steps follow the gradients' signs, so small differences show at full size)
    assert gap_ddp < 0.75, gap_ddp
    assert gap_ddp < 0.7 * gap_half, (gap_ddp, gap_half)
    assert ddp["returncode"] == 0, ddp_err[-3000:]  # rank 0 calibrates and packages alone
    assert Path(tmp_path / "ddp" / "model" / "mmx_model.json").is_file()
