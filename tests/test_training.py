"""Data module, Lightning module and the train/evaluate stages, on tiny fake shard sets."""

from __future__ import annotations

import copy
import json
import shutil

import mlflow
import numpy as np
import pytest
import torch

from mmx.classes import ABBREVIATIONS, label_bit
from mmx.errors import ConfigError
from mmx.io.shards import Sample, ShardWriter
from mmx.model.package import load_package
from mmx.training.datamodule import EpochSampler, ShardDataModule, ShardDataset
from mmx.training.lit_module import schedule_factor

SIZE = 48


def _fake_set(folder, *, n: int, seed: int) -> dict:
    """Sky + noise, a few bright single pixels labelled CR, a column labelled HCL."""
    rng = np.random.default_rng(seed)
    cr, hcl, bg = label_bit("CR"), label_bit("HCL"), label_bit("BG")
    with ShardWriter(folder, shard_size=3) as writer:
        for i in range(n):
            image = (100.0 + 5.0 * rng.standard_normal((SIZE, SIZE))).astype(np.float32)
            labels = np.full((SIZE, SIZE), bg, dtype=np.uint16)
            ys, xs = rng.integers(2, SIZE - 2, size=(2, 6))
            image[ys, xs] += 400.0
            labels[ys, xs] = cr
            col = int(rng.integers(4, SIZE - 4))
            image[:, col] += 60.0
            labels[:, col] |= hcl
            labels[:, col] &= ~np.uint16(bg)
            ignore = np.zeros((SIZE, SIZE), dtype=np.uint8)
            ignore[:3, :3] = 1
            writer.add(Sample(image, labels, ignore, {"index": i}))
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture
def shard_sets(tmp_path):
    folders = {}
    for k, (split, n) in enumerate((("train", 8), ("val", 3), ("test", 3))):
        folders[split] = tmp_path / "derived" / split
        _fake_set(folders[split], n=n, seed=100 + k)
    return folders


def _cfg(**over) -> dict:
    cfg = {
        "architecture": "unet", "arch_kwargs": {"widths": [4, 8]}, "seed": 3, "crop": 32,
        "val_crop": None, "augment": True, "mesh": 16, "batch_size": 4, "val_batch_size": 2,
        "num_workers": 0, "num_threads": 1, "cache_mb": 16, "optimizer": "adam",
        "lr": 3e-3, "weight_decay": 1e-5, "lr_schedule": "none", "aux_weight": 0.5,
        "max_epochs": 2, "max_steps": -1, "max_time_min": None, "limit_train_batches": 2,
        "limit_val_batches": 1.0, "accelerator": "cpu", "devices": 1, "strategy": "auto",
        "precision": "32-true", "metric_bins": 200, "checkpoint_dir": "checkpoints",
        "resume": False, "tile": 64, "log_every_n_steps": 1, "progress_bar": False,
    }
    cfg.update(over)
    return cfg


def test_dataset_crops_are_seeded_and_consistent(shard_sets):
    ds = ShardDataset(shard_sets["train"], crop=24, random_crop=True, augment=True, seed=5,
                      mesh=16)
    a, b = ds[(2, 1)], ds[(2, 1)]
    assert a["image"].shape == (1, 24, 24) and a["labels"].dtype == torch.int32
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
    c = ds[(2, 2)]  # another epoch: another crop or symmetry
    assert not torch.equal(a["image"], c["image"])
    # labels travel with the pixels: CR pixels are the bright ones in every crop
    for item in (a, c):
        cr = (item["labels"] & label_bit("CR")) != 0
        if cr.any():
            assert item["image"][0][cr].min() > item["image"][0][~cr].max() - 1e-3 or \
                item["image"][0][cr].min() > 20


def test_dataset_pads_small_images_as_ignored(shard_sets):
    ds = ShardDataset(shard_sets["val"], crop=SIZE + 8, mesh=16)
    item = ds[0]
    assert item["image"].shape == (1, SIZE + 8, SIZE + 8)
    assert item["ignore"][-8:, :].eq(1).all() and item["ignore"][:, -8:].eq(1).all()


def test_focus_crops_hold_a_pixel_of_a_focus_class(shard_sets):
    def crops(fraction):
        ds = ShardDataset(shard_sets["train"], crop=16, random_crop=True, augment=True,
                          seed=2, mesh=16, focus_classes=["CR"], focus_fraction=fraction)
        return [ds[(i, e)]["labels"] for i in range(8) for e in range(4)]

    for labels in crops(1.0):  # every crop, at least crop // 8 = 2 px inside its edges
        inner = (labels[2:-2, 2:-2] & label_bit("CR")) != 0
        assert inner.any()
    uniform = [bool(((lab & label_bit("CR")) != 0).any()) for lab in crops(0.0)]
    assert sum(uniform) < 0.8 * len(uniform)  # 6 CR pixels in 48x48: often none in 16x16
    with pytest.raises(ConfigError, match=r"focus_fraction must be in \[0, 1\], got 1.5"):
        ShardDataset(shard_sets["train"], crop=16, focus_fraction=1.5)


def test_schedule_factors():
    assert schedule_factor("none", 0.7) == 1.0
    assert schedule_factor("cosine", 0.0) == 1.0 and schedule_factor("cosine", 0.5) == \
        pytest.approx(0.5) and schedule_factor("cosine", 1.0) == pytest.approx(0.0)
    oc = [schedule_factor("onecycle", t, warmup=0.1, final=0.01) for t in (0, 0.05, 0.1, 1, 2)]
    assert oc == pytest.approx([0.01, 0.505, 1.0, 0.01, 0.01])
    with pytest.raises(ConfigError, match="lr_schedule must be one of"):
        schedule_factor("step", 0.5)


def test_module_calibrates_biases_and_priors_to_its_loss():
    from mmx.training.lit_module import MaskModule
    from mmx.training.loss import MaskLoss

    priors = [0.01] + [0.5] * (len(ABBREVIATIONS) - 1)
    kw = {"arch_kwargs": {"widths": [4, 8]}, "max_weight_ratio": 9.0}
    balanced = MaskModule(priors=priors, loss="balanced", balance_beta=1.0, **kw)
    # CR: odds 99 capped at 9 -> calibrated odds 9/99; the others: odds 1
    cal = balanced.calibration_priors()
    assert cal["CR"] == pytest.approx(9 / 108) and cal["BG"] == pytest.approx(0.5)
    assert balanced.net.head.bias[0].item() == pytest.approx(np.log(9 / 99), rel=1e-5)
    assert all(h.bias[0].item() == pytest.approx(np.log(9 / 99), rel=1e-5)
               for h in balanced.net.aux_heads)
    paper = MaskModule(priors=priors, loss="paper", neighbourhood=3, **kw)
    assert isinstance(paper.loss, MaskLoss) and paper.calibration_priors()["CR"] == 0.01
    assert paper.net.head.bias[0].item() == pytest.approx(np.log(0.01 / 0.99), rel=1e-5)
    plain = MaskModule(priors=priors, init_bias=False, **kw)
    assert plain.net.head.bias[0].item() != pytest.approx(np.log(9 / 99), rel=1e-2)


def test_epoch_sampler_is_reproducible():
    s1, s2 = EpochSampler(10, seed=4), EpochSampler(10, seed=4)
    e0, e1 = list(s1), list(s1)
    assert e0 == list(s2) and e0 != e1
    assert sorted(i for i, _ in e0) == list(range(10)) and {e for _, e in e1} == {1}


def test_datamodule_batches(shard_sets):
    dm = ShardDataModule(shard_sets["train"], shard_sets["val"], crop=32, batch_size=4,
                         val_batch_size=2, mesh=16, seed=1)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["ignore"].shape == (4, 32, 32)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, 1, SIZE, SIZE)
    with pytest.raises(ConfigError, match="batch sizes"):
        ShardDataModule(shard_sets["train"], shard_sets["val"], batch_size=0)


def test_smoke_fit_tracks_run_and_saves_package(shard_sets, tmp_path):
    from mmx.training.evaluation import evaluate
    from mmx.training.fit import train

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    model_dir, results = tmp_path / "models" / "m", tmp_path / "results"
    cfg = _cfg(lr_schedule="onecycle", warmup=0.25, focus_classes=["CR"], focus_fraction=0.5)
    out = train(cfg, train_dir=shard_sets["train"], val_dir=shard_sets["val"],
                model_dir=model_dir, results_dir=results, tracking_uri=uri,
                root=tmp_path)
    assert out["global_step"] == 4
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((results / "train_run.json").read_text())["run_id"] == out["run_id"]

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(out["run_id"])
    assert run.data.params["train.architecture"] == "unet"
    assert run.data.params["train.crop"] == "32"
    assert {"train.pos_weight.CR", "train.neg_weight.CR"} <= set(run.data.params)
    assert {"git_commit", "data_hash"} <= set(run.data.tags)
    assert {"train/loss", "val/loss", "val/CR.auc", "val/CR.tpr_at_fpr_1e-3"} <= \
        set(run.data.metrics)
    assert len(client.get_metric_history(out["run_id"], "val/loss")) == 2  # one per epoch
    assert run.data.metrics["val/images"] == 3  # the whole validation split, each epoch
    # one-cycle over the 4-step budget: warm-up from 1 % of lr to lr, then cosine down
    lrs = sorted((m.step, m.value) for m in client.get_metric_history(out["run_id"], "lr"))
    assert [v for _, v in lrs] == pytest.approx(
        [3e-3 * schedule_factor("onecycle", k / 4, warmup=0.25) for k in range(4)])
    assert lrs[0][1] == pytest.approx(3e-5) and lrs[1][1] == pytest.approx(3e-3)

    pkg = load_package(model_dir)
    meta = pkg.meta
    summary = json.loads((shard_sets["train"] / "summary.json").read_text())
    assert meta.provenance["split_class_fraction"] == pytest.approx(summary["class_fraction"])
    # the stored priors are those the balanced loss calibrates to: the class fractions of
    # the crops seen, with odds multiplied by w+/w- (so CR, rare, comes out near 0.5)
    assert set(meta.training_priors) == set(ABBREVIATIONS)
    assert 0.2 < meta.training_priors["CR"] < 0.8 and meta.training_priors["DP"] < 1e-3
    assert run.data.metrics["calibration_prior.CR"] == pytest.approx(meta.training_priors["CR"])
    assert meta.provenance["run_id"] == out["run_id"]
    assert meta.arch_kwargs == {"widths": [4, 8]} and meta.tile == 64
    assert meta.margin == out["margin"] and meta.margin > 0 and meta.margin % 2 == 0
    assert meta.thresholds and all(0 < t < 1 for t in meta.thresholds.values())  # calibrated
    assert meta.normalization == {"mesh": 16} and meta.params["train"]["crop"] == 32
    x = torch.zeros(1, 1, 20, 30)
    assert pkg.net(x).shape == (1, len(ABBREVIATIONS), 20, 30)

    # evaluate: metrics.json, long-format curves, PNGs, logged into the same run
    ev = evaluate({"batch_size": 2, "metric_bins": 200, "num_threads": 1,
                   "log_to_mlflow": True}, model_dir=model_dir,
                  test_dir=shard_sets["test"], results_dir=results, tracking_uri=uri)
    metrics = json.loads((results / "metrics.json").read_text())
    # (purity is undefined, so left out, when the tiny model flags nothing at the default point)
    assert {"CR.auc", "CR.tpr_at_fpr_1e-3", "CR.tpr", "CR.fpr", "mean.auc",
            "HCL.auc"} <= set(metrics)
    assert "DP.auc" not in metrics  # absent class: undefined, left out
    assert ev["metrics"] == metrics
    roc = (results / "plots" / "roc.csv").read_text().splitlines()
    assert roc[0] == "class,fpr,tpr" and any(r.startswith("CR,") for r in roc[1:])
    assert (results / "plots" / "purity.csv").read_text().startswith("class,purity,tpr")
    assert (results / "plots" / "roc.png").stat().st_size > 1000
    run = client.get_run(out["run_id"])
    assert run.data.metrics["test.CR.auc"] == pytest.approx(metrics["CR.auc"])
    arts = {a.path for a in client.list_artifacts(out["run_id"], "plots")}
    assert {"plots/roc.png", "plots/purity.png"} <= arts
    assert load_package(model_dir).meta.metrics == {}  # the train stage's output is untouched

    # resume: continues the same MLflow run from last.ckpt, up to the new epoch budget
    out2 = train(_cfg(resume=True, max_epochs=3), train_dir=shard_sets["train"],
                 val_dir=shard_sets["val"], model_dir=model_dir, results_dir=results,
                 tracking_uri=uri, root=tmp_path)
    assert out2["run_id"] == out["run_id"] and out2["global_step"] == 6
    assert len(client.get_metric_history(out["run_id"], "val/loss")) == 3


def test_train_rejects_misaligned_tile_and_bad_choices(shard_sets, tmp_path):
    from mmx.training.fit import train

    def run(**over):
        train(_cfg(**over), train_dir=shard_sets["train"], val_dir=shard_sets["val"],
              model_dir=tmp_path / "m", results_dir=tmp_path / "r",
              tracking_uri=f"sqlite:///{tmp_path / 'db.sqlite'}", root=tmp_path)

    with pytest.raises(ConfigError, match="multiple of the network's stride 2"):
        run(tile=63)
    with pytest.raises(ConfigError, match="final_weights must be 'best' or 'last', got 'mean'"):
        run(final_weights="mean")
    with pytest.raises(ConfigError, match="unknown loss 'dice'"):
        run(loss="dice")


def test_fit_packages_the_last_weights_with_sparse_validation(shard_sets, tmp_path):
    from mmx.training.fit import train

    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    out = train(_cfg(final_weights="last", val_every_n_epochs=2, max_epochs=3,
                     lr_schedule="cosine", limit_val_batches=1), train_dir=shard_sets["train"],
                val_dir=shard_sets["val"], model_dir=tmp_path / "m",
                results_dir=tmp_path / "r", tracking_uri=uri, root=tmp_path)
    assert out["global_step"] == 6
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert len(client.get_metric_history(out["run_id"], "val/loss")) == 1  # epoch 2 only
    assert client.get_run(out["run_id"]).data.metrics["val/images"] == 2  # 1 batch of 2 of 3
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    packaged = load_package(tmp_path / "m").net.state_dict()
    assert all(torch.equal(v, last[f"net.{k}"]) for k, v in packaged.items())


def test_distillation_pulls_the_network_towards_its_teacher(shard_sets, tmp_path):
    from mmx.io.shards import ShardSet
    from mmx.model.nets import init_output_bias
    from mmx.model.package import save_package
    from mmx.sky.normalize import normalize_image
    from mmx.training.fit import train

    def fit(name: str, **over):
        train(_cfg(checkpoint_dir=f"ck-{name}", **over), train_dir=shard_sets["train"],
              val_dir=shard_sets["val"], model_dir=tmp_path / name,
              results_dir=tmp_path / f"r-{name}",
              tracking_uri=f"sqlite:///{tmp_path / 'db.sqlite'}", root=tmp_path)
        return load_package(tmp_path / name).net.eval()

    fit("base", seed=5)
    base = load_package(tmp_path / "base")
    for name, cr_logit in (("says-cr", 6.0), ("says-no-cr", -6.0)):  # whatever the truth says
        bias = torch.full((len(ABBREVIATIONS),), -2.0)
        bias[ABBREVIATIONS.index("CR")] = cr_logit
        save_package(init_output_bias(copy.deepcopy(base.net), bias), base.meta, tmp_path / name)
    student = dict(seed=6, lr=1e-2, aux_weight=0.0, init_weights="base")
    nets = [fit("alone", **student),
            fit("taught-cr", distill_from="says-cr", distill_weight=1.0, **student),
            fit("half-cr", distill_from="says-cr", distill_weight=0.5, **student),
            fit("taught-no-cr", distill_from="says-no-cr", distill_weight=1.0, **student)]
    val = ShardSet(shard_sets["val"])
    images = torch.from_numpy(np.stack([normalize_image(val[i].image, mesh=16)
                                        for i in range(len(val))])[:, None])
    cr = ABBREVIATIONS.index("CR")
    with torch.no_grad():
        alone, taught, half, taught_no = (float(torch.sigmoid(n(images)[:, cr]).mean())
                                          for n in nets)
    assert min(taught, half) > alone + 0.01 and taught_no < alone - 0.01, (alone, taught,
                                                                           half, taught_no)
    with pytest.raises(ConfigError, match="distill_weight 0.5 needs the balanced loss"):
        fit("paper", loss="paper", distill_from="says-cr")
    with pytest.raises(ConfigError, match=r"distill_weight must be in \(0, 1\] with "
                       r"distill_from, got 0.0"):
        fit("zero", distill_from="says-cr", distill_weight=0.0)
    with pytest.raises(ConfigError, match="train.distill_from: .*no-such: no such model folder"):
        fit("missing", distill_from="no-such")


def test_fine_tuning_starts_from_a_package_of_the_same_network(shard_sets, tmp_path):
    from mmx.training.fit import train

    def fit(name: str, **over) -> dict:
        return train(_cfg(checkpoint_dir=f"ck-{name}", **over), train_dir=shard_sets["train"],
                     val_dir=shard_sets["val"], model_dir=tmp_path / name,
                     results_dir=tmp_path / f"r-{name}",
                     tracking_uri=f"sqlite:///{tmp_path / 'db.sqlite'}", root=tmp_path)

    fit("base", seed=5)
    base = load_package(tmp_path / "base").net
    # with a vanishing learning rate the fine-tuned weights stay the starting package's
    fit("tuned", seed=6, lr=1e-12, init_weights="base")
    tuned = load_package(tmp_path / "tuned").net
    for (name, p0), p1 in zip(base.named_parameters(), tuned.parameters(), strict=True):
        torch.testing.assert_close(p1, p0, rtol=0, atol=1e-9, msg=name)
    # bottleneck context and full-resolution detail blocks may be added: the rest starts
    # from the package
    fit("wider", seed=6, lr=1e-12, init_weights="base",
        arch_kwargs={**_cfg()["arch_kwargs"], "context": [1], "detail": 4})
    wider = load_package(tmp_path / "wider").net
    held = dict(wider.named_parameters())
    for name, p0 in base.named_parameters():
        torch.testing.assert_close(held[name], p0, rtol=0, atol=1e-9, msg=name)
    assert wider.context is not None and wider.detail is not None
    fit("scratch", seed=6, lr=1e-12)  # the same fit without init_weights starts elsewhere
    scratch = load_package(tmp_path / "scratch").net
    assert not torch.allclose(next(scratch.parameters()), next(base.parameters()), atol=1e-3)
    with pytest.raises(ConfigError, match=r"init_weights: .*base holds unet "
                       r"\{'widths': \[4, 8\]\}, expected unet \{'widths': \[4, 4\]\}"):
        fit("other", arch_kwargs={"widths": [4, 4]}, init_weights="base")
    shutil.copytree(tmp_path / "base", tmp_path / "permuted")
    meta = json.loads((tmp_path / "permuted" / "mmx_model.json").read_text())
    meta["classes"] = meta["classes"][::-1]  # same shapes, classes in another order
    (tmp_path / "permuted" / "mmx_model.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"permuted outputs classes BG,BBG,OV.*expected CR,"):
        fit("other", init_weights="permuted")


def test_frozen_batchnorm_keeps_the_starting_statistics_while_the_weights_learn(shard_sets,
                                                                                tmp_path):
    from mmx.training.fit import train

    def fit(name: str, **over) -> dict[str, torch.Tensor]:
        train(_cfg(checkpoint_dir=f"ck-{name}", max_epochs=4, **over),  # validations in between
              train_dir=shard_sets["train"], val_dir=shard_sets["val"],
              model_dir=tmp_path / name, results_dir=tmp_path / f"r-{name}",
              tracking_uri=f"sqlite:///{tmp_path / 'db.sqlite'}", root=tmp_path)
        return load_package(tmp_path / name).net.state_dict()

    base = fit("base", seed=5)
    frozen = fit("frozen", seed=6, init_weights="base", freeze_batchnorm=True)
    free = fit("free", seed=6, init_weights="base")
    stats = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(frozen[k], base[k]) for k in stats)
    assert not all(torch.equal(free[k], base[k]) for k in stats)
    learnt = [k for k in base if k.endswith("weight")]  # convolutions and BatchNorm scales
    assert all(not torch.equal(frozen[k], base[k]) for k in learnt)
    with pytest.raises(ConfigError, match="freeze_batchnorm: true keeps the BatchNorm "
                       "statistics of train.init_weights, which is null"):
        fit("scratch", seed=6, freeze_batchnorm=True)
