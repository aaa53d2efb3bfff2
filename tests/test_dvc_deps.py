"""Each DVC stage lists every project file its script imports: `dvc repro` never goes stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from import_graph import imported_names

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mmx", "pipelines")


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported_modules(file: Path) -> set[str]:
    """Absolute names of every module ``file`` imports, at any depth of its code."""
    return imported_names(file.read_text(), ".".join(file.relative_to(ROOT).parent.parts))


def import_closure(script: Path) -> set[Path]:
    """The project files ``script`` runs: itself and every project module it imports."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for name in _imported_modules(file):
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            for i in range(1, len(parts) + 1):  # parent packages' __init__ run too
                found = _module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _interpolate(text: str, params: dict) -> str:
    def value(match: re.Match) -> str:
        node = params
        for key in match.group(1).split("."):
            node = node[key]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, text)


def missing_deps(stage: dict, params: dict) -> list[str]:
    """Project files the stage's script imports that none of its deps covers."""
    match = re.search(r"python3?\s+-m\s+([\w.]+)", stage["cmd"])
    assert match, f"stage command {stage['cmd']!r} does not run `python -m MODULE`"
    script = _module_file(match.group(1))
    assert script is not None, f"{match.group(1)} is not a project module"
    deps = [(ROOT / _interpolate(d, params)).resolve() for d in stage.get("deps", [])]
    return sorted(str(f.relative_to(ROOT)) for f in import_closure(script)
                  if not any(f == d or d in f.parents for d in deps))


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_cover_every_imported_file(name):
    missing = missing_deps(_stages()[name], _params())
    assert not missing, f"stage {name}: add to its deps in dvc.yaml: {', '.join(missing)}"


def test_closure_follows_relative_and_local_imports():
    files = import_closure(ROOT / "pipelines" / "train.py")
    rel = {str(f.relative_to(ROOT)) for f in files}
    # imported inside train() only, and through the mmx package's own __init__
    assert {"mmx/__init__.py", "mmx/model/hardware.py", "pipelines/params.py"} <= rel


def test_stage_scripts_import_no_other_stage():
    scripts = {p.stem for p in (ROOT / "pipelines").glob("*.py")} - {"__init__", "params"}
    for name, stage in _stages().items():
        module = re.search(r"python3?\s+-m\s+([\w.]+)", stage["cmd"]).group(1)
        others = {f"pipelines.{s}" for s in scripts} - {module}
        imported = _imported_modules(_module_file(module))
        assert not imported & others, f"stage {name} imports another stage: {imported & others}"
