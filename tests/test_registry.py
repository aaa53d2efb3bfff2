"""Register, promote and load models through a real (temporary) MLflow sqlite store."""

import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmx.classes import ABBREVIATIONS
from mmx.cli.app import app
from mmx.errors import ConfigError, ModelError
from mmx.model.nets import build_network
from mmx.model.package import ModelMeta, save_package
from mmx.tracking.registry import list_versions, promote, register_package, resolve_model


def _package(tmp_path, name, seed, metric):
    torch.manual_seed(seed)
    net = build_network("unet", n_classes=14, widths=[4, 8])
    meta = ModelMeta(architecture="unet", arch_kwargs={"widths": [4, 8]},
                     training_priors=dict.fromkeys(ABBREVIATIONS, 0.01), tile=64, margin=8,
                     metrics={"mean.tpr_at_fpr_1e-3": metric, "CR.auc": 0.99},
                     provenance={"git_commit": "abc1234", "data_hash": "d00d"})
    return save_package(net, meta, tmp_path / name), net


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_register_promote_load_round_trip(tmp_path):
    uri = os.environ["MLFLOW_TRACKING_URI"]  # the temporary store from conftest
    folder1, net1 = _package(tmp_path, "m1", 0, 0.5)
    folder2, net2 = _package(tmp_path, "m2", 1, 0.7)
    v1 = register_package(folder1, tracking_uri=uri)
    v2 = register_package(folder2, tracking_uri=uri)
    assert (v1.version, v2.version) == (1, 2)
    assert v2.tags["git_commit"] == "abc1234" and v2.tags["mean.tpr_at_fpr_1e-3"] == "0.7"

    promote("mmx", 1, tracking_uri=uri)
    loaded = resolve_model("models:/mmx@production", tracking_uri=uri)
    assert _same_weights(loaded.net, net1) and not _same_weights(loaded.net, net2)
    assert loaded.registry["version"] == 1 and loaded.meta.training_priors["CR"] == 0.01
    assert _same_weights(resolve_model(None, tracking_uri=uri).net, net1)  # default = production

    promote("mmx", 2, tracking_uri=uri)  # the alias moves
    assert _same_weights(resolve_model("models:/mmx@production", tracking_uri=uri).net, net2)
    assert _same_weights(resolve_model("models:/mmx/1", tracking_uri=uri).net, net1)
    assert [(v.version, v.aliases) for v in list_versions("mmx", tracking_uri=uri)] == [
        (2, ("production",)), (1, ())]

    listing = CliRunner().invoke(app, ["models", "list"])
    assert listing.exit_code == 0 and "production" in listing.output and "abc1234" in listing.output


def test_unknown_alias_and_folder_are_clear_errors(tmp_path):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    folder, _ = _package(tmp_path, "m", 0, 0.5)
    register_package(folder, tracking_uri=uri)
    with pytest.raises(ModelError, match=r"models:/mmx@staging: not found .*v1"):
        resolve_model("models:/mmx@staging", tracking_uri=uri)
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="must be models:/NAME@ALIAS or models:/NAME/VERSION"):
        resolve_model("models:/mmx", tracking_uri=uri)
    result = CliRunner().invoke(app, ["models", "import", str(folder), "--alias", "production"])
    assert result.exit_code == 0 and "registered mmx version 2 @production" in result.output


def test_metrics_go_into_the_registered_copy_not_the_folder(tmp_path):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    folder, _ = _package(tmp_path, "m", 0, 0.5)
    before = (folder / "mmx_model.json").read_text()
    info = register_package(folder, tracking_uri=uri, metrics={"mean.tpr_at_fpr_1e-3": 0.9})
    assert info.tags["mean.tpr_at_fpr_1e-3"] == "0.9"
    loaded = resolve_model(f"models:/mmx/{info.version}", tracking_uri=uri)
    assert loaded.meta.metrics["mean.tpr_at_fpr_1e-3"] == 0.9
    assert loaded.meta.metrics["CR.auc"] == 0.99
    assert (folder / "mmx_model.json").read_text() == before


def test_registered_model_serves_through_mlflow_pyfunc(tmp_path, rng):
    import mlflow.pyfunc

    uri = os.environ["MLFLOW_TRACKING_URI"]
    folder, _ = _package(tmp_path, "m", 0, 0.5)
    info = register_package(folder, tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/mmx/{info.version}")
    image = rng.normal(100.0, 5.0, (40, 56)).astype(np.float32)
    probabilities = model.predict(image)
    assert probabilities.shape == (14, 40, 56)
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_cli_promote_refuses_a_worse_version_without_force(tmp_path):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    for i, metric in enumerate((0.59, 0.107)):
        register_package(_package(tmp_path, f"m{i}", i, metric)[0], tracking_uri=uri)
    promote("mmx", 1, tracking_uri=uri)
    runner = CliRunner()
    refused = runner.invoke(app, ["models", "promote", "mmx", "2"])
    assert refused.exit_code == 1
    assert "now @production: version 1" in refused.output and "0.107" in refused.output
    assert "worse than version 1" in refused.output and "--force" in refused.output
    assert [v.aliases for v in list_versions("mmx", tracking_uri=uri)] == [(), ("production",)]
    forced = runner.invoke(app, ["models", "promote", "mmx", "2", "--force"])
    assert forced.exit_code == 0 and "is now @production" in forced.output
    assert list_versions("mmx", tracking_uri=uri)[0].aliases == ("production",)


def test_imported_model_run_carries_its_figures_and_the_experiment_opens_on_runs(tmp_path):
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    info = register_package(_package(tmp_path, "m", 0, 0.42)[0], tracking_uri=uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(info.run_id)
    assert run.info.run_name == "imported-m"
    assert run.data.metrics["test.mean.tpr_at_fpr_1e-3"] == 0.42
    assert run.data.tags["source.git_commit"] == "abc1234"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize(("policy", "new", "current", "has", "expected"), [
    ("auto", 0.5, 0.4, True, True), ("auto", 0.4, 0.4, True, True),
    ("auto", 0.3, 0.4, True, False), ("auto", None, 0.4, True, False),
    ("auto", 0.1, None, False, True), ("always", 0.1, 0.9, True, True),
    ("never", 0.9, 0.1, True, False),
])
def test_promotion_gate(policy, new, current, has, expected):
    from mmx.tracking.promotion import should_promote

    assert should_promote(policy, new, current, has_current=has) is expected


def test_register_stage_gate_keeps_the_better_production_model(tmp_path):
    from mmx.tracking.promotion import register_and_gate

    uri = os.environ["MLFLOW_TRACKING_URI"]
    good = _package(tmp_path, "good", 0, 0.6)[0]
    worse = _package(tmp_path, "worse", 1, 0.2)[0]
    first = register_and_gate(good, metrics={"mean.tpr_at_fpr_1e-3": 0.6}, name="mmx",
                              alias="production", policy="auto", tracking_uri=uri)
    second = register_and_gate(worse, metrics={"mean.tpr_at_fpr_1e-3": 0.2}, name="mmx",
                               alias="production", policy="auto", tracking_uri=uri)
    assert first["promoted"] and not second["promoted"] and second["previous"] == 1
    assert [(v.version, v.aliases) for v in list_versions("mmx", tracking_uri=uri)] == [
        (2, ("candidate",)), (1, ("production",))]
    with pytest.raises(ConfigError, match="register.promote must be one of"):
        register_and_gate(worse, metrics={}, name="mmx", alias="production",
                          policy="sometimes", tracking_uri=uri)


def test_a_moved_project_keeps_its_registered_models(tmp_path, monkeypatch):
    """MLflow writes absolute artifact paths; a moved store re-anchors them beside itself."""
    import shutil
    import sqlite3
    from pathlib import Path

    import mlflow

    old, new = tmp_path / "old" / "mlruns", tmp_path / "moved" / "mlruns"
    uri_old, uri_new = f"sqlite:///{old / 'mlflow.db'}", f"sqlite:///{new / 'mlflow.db'}"
    folder, net = _package(tmp_path, "m", 0, 0.5)
    version = register_package(folder, tracking_uri=uri_old)
    promote("mmx", version.version, tracking_uri=uri_old)
    new.parent.mkdir()
    shutil.move(old, new)
    monkeypatch.setenv("MMX_CACHE_DIR", str(tmp_path / "empty-cache"))  # no cached copy

    loaded = resolve_model("models:/mmx@production", tracking_uri=uri_new)
    assert _same_weights(loaded.net, net)
    with sqlite3.connect(new / "mlflow.db") as con:
        locations = [r[0] for r in con.execute("SELECT storage_location FROM model_versions")]
        locations += [r[0] for r in con.execute("SELECT artifact_uri FROM runs")]
    assert locations and all(str(tmp_path / "moved") in loc for loc in locations), locations
    got = mlflow.artifacts.download_artifacts(  # MLflow itself finds the artifacts again
        artifact_uri=f"models:/mmx/{version.version}", dst_path=str(tmp_path / "dl"),
        tracking_uri=uri_new)
    assert list(Path(got).rglob("mmx_model.json"))


def test_ui_pages_open_the_training_view_of_the_experiment():
    from urllib.parse import parse_qs

    from mmx.tracking.store import ui_url

    base = "http://127.0.0.1:5000"
    assert ui_url(base, None) == base
    table, charts = ui_url(base, "3"), ui_url(base, "3", charts=True)
    for page in (table, charts):
        route, query = page.split("#", 1)[1].split("?", 1)
        assert route == "/experiments/3/runs"
        q = parse_qs(query)
        assert q["workflowType"] == ["machine_learning"]  # not MLflow 3's GenAI view
        assert q["orderByKey"] == ["metrics.`test.mean.tpr_at_fpr_1e-3`"]
        assert q["orderByAsc"] == ["false"]
    assert "compareRunsMode" not in table and parse_qs(charts.split("?", 1)[1])[
        "compareRunsMode"] == ["CHART"]
    run = ui_url(base, "3", "abc")
    assert run == f"{base}/#/experiments/3/runs/abc/model-metrics?workflowType=machine_learning"
