"""The command line's start-up path and its common behaviour."""

import subprocess
import sys

from typer.testing import CliRunner

from mmx.cli.app import app

runner = CliRunner()


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from mmx.cli.app import app; "
            "heavy = {'torch', 'mlflow', 'pytorch_lightning', 'galsim', 'dvc', 'dask', "
            "'distributed', 'hypothesis'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_classes_command_lists_the_table():
    result = runner.invoke(app, ["classes"])
    assert result.exit_code == 0
    assert "CR" in result.output and "2048" in result.output and "background" in result.output


def test_models_list_on_empty_store():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "no versions of 'mmx' registered yet" in result.output


def test_promote_unknown_version_is_one_clear_error():
    result = runner.invoke(app, ["models", "promote", "mmx", "7"])
    assert result.exit_code == 1
    assert "mmx: error: model 'mmx' has no version 7" in result.output


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group) if not prefix else group
    for name, cmd in getattr(click_group, "commands", {}).items():
        yield (*prefix, name)
        yield from _commands(cmd, (*prefix, name))


def test_option_help_names_what_each_option_takes():
    """Options show a metavar saying what they take (FILE, CLS=P), not a Python type."""
    import re

    commands = list(_commands(app))
    assert ("predict",) in commands and ("models", "promote") in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0, command
        typed = re.findall(r"--[\w-]+ <(?:str|int|float|list\[\w+\]|path|int range)>",
                           result.output)
        assert not typed, f"mmx {' '.join(command)}: {typed}"
    usage = runner.invoke(app, ["predict", "--help"], terminal_width=200).output
    assert "mmx predict [OPTIONS] {PATH}..." in usage and "PATH..." not in usage
