"""The command line as astronomers meet it: version, completion, help texts, ``mmx classes``."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from mmx import __version__
from mmx.classes import CLASSES
from mmx.cli.app import app

runner = CliRunner()


def test_version_and_completion():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"mmx {__version__}"
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


@pytest.mark.parametrize("command", [["models", "list"], ["models", "promote"], ["predict"],
                                     ["classes"]])
def test_help_texts_keep_their_words_and_show_flags_as_flags(command):
    out = runner.invoke(app, [*command, "--help"], terminal_width=100).output
    assert "<bool>" not in out  # flags are flags
    if command[0] == "models":
        assert "MLflow store [default: sqlite store under the" in " ".join(out.split())
    if command == ["predict"]:
        assert re.search(r"^\s+--preview\s+Also write", out, re.M)


def test_classes_shows_nodata_and_the_thresholds_predict_uses():
    pytest.importorskip("torch")
    from mmx.inference import Predictor
    from mmx.registry import resolve_model

    result = runner.invoke(app, ["classes"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.search(r"NODATA\s+8192", result.output)
    used = Predictor(resolve_model(None)).default_thresholds()  # what predict applies
    for cls in CLASSES:
        row = next(line for line in lines if re.match(rf"\s*{cls.index}\s+{cls.abbr}\s", line))
        fields = row.split()
        assert float(fields[4]) == pytest.approx(cls.threshold)  # the table's
        assert float(fields[5]) == pytest.approx(used[cls.abbr], rel=1e-2)  # the model's
    table = runner.invoke(app, ["classes", "--table"])
    assert table.exit_code == 0 and "model" not in table.output.splitlines()[0]
    bad = runner.invoke(app, ["classes", "--model", "no/such/folder"])
    assert bad.exit_code == 1
    assert "mmx: error: no/such/folder: no such model folder" in bad.output
