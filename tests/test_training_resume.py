"""An interrupted training resumes from its last checkpoint and ends where an uninterrupted
one ends (same steps, same weights to float tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mmx.classes import label_bit  # noqa: E402
from mmx.io.shards import Sample, ShardWriter  # noqa: E402

SIZE = 40


def _fake_set(folder, *, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cr, bg = label_bit("CR"), label_bit("BG")
    with ShardWriter(folder, shard_size=4) as writer:
        for i in range(n):
            image = (100.0 + 5.0 * rng.standard_normal((SIZE, SIZE))).astype(np.float32)
            labels = np.full((SIZE, SIZE), bg, dtype=np.uint16)
            ys, xs = rng.integers(2, SIZE - 2, size=(2, 6))
            image[ys, xs] += 400.0
            labels[ys, xs] = cr
            writer.add(Sample(image, labels, np.zeros((SIZE, SIZE), np.uint8), {"index": i}))


def _cfg(**over) -> dict:
    cfg = {
        "architecture": "unet", "arch_kwargs": {"widths": [4, 8]}, "seed": 5, "crop": 32,
        "val_crop": None, "augment": False, "mesh": 16, "batch_size": 2, "val_batch_size": 2,
        "num_workers": 0, "num_threads": 1, "cache_mb": 16, "optimizer": "adam",
        "lr": 3e-3, "weight_decay": 1e-5, "lr_schedule": "none", "aux_weight": 0.5,
        "max_epochs": 3, "max_steps": -1, "max_time_min": None, "limit_train_batches": 2,
        "limit_val_batches": 1.0, "accelerator": "cpu", "devices": 1, "strategy": "auto",
        "precision": "32-true", "metric_bins": 50, "checkpoint_dir": "checkpoints",
        "resume": False, "tile": 64, "log_every_n_steps": 1, "progress_bar": False,
        "final_weights": "last",
    }
    cfg.update(over)
    return cfg


@pytest.mark.slow
def test_resumed_training_ends_where_an_uninterrupted_one_ends(tmp_path):
    from mmx.model.package import load_package
    from mmx.training.fit import train

    shards = {}
    for k, (split, n) in enumerate((("train", 6), ("val", 2))):
        shards[split] = tmp_path / "derived" / split
        _fake_set(shards[split], n=n, seed=300 + k)

    def fit(name, **over):
        root = tmp_path / name
        out = train(_cfg(**over), train_dir=shards["train"], val_dir=shards["val"],
                    model_dir=root / "model", results_dir=root / "results",
                    tracking_uri=f"sqlite:///{root / 'mlflow.db'}", root=root)
        return out, load_package(root / "model").net.state_dict()

    whole, w_whole = fit("whole")
    fit("cut", max_epochs=2)  # the run stopped after 2 of its 3 epochs
    resumed, w_resumed = fit("cut", resume=True)
    assert resumed["global_step"] == whole["global_step"] == 6
    assert resumed["run_id"] != whole["run_id"]
    for key, value in w_whole.items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(w_resumed[key], value, rtol=1e-5, atol=1e-6)
