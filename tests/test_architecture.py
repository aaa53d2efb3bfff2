"""The import rule between mmx's folders, as the table of docs/architecture.md states it."""

from __future__ import annotations

import re
from pathlib import Path

from import_graph import imported_names

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "mmx"
TOP = "mmx"  # the top-level modules (classes, errors) and the package itself
TOP_LEVEL_MODULES = {"__init__", "__main__", "classes", "errors", "parallel"}


def import_rule(text: str | None = None) -> dict[str, set[str]]:
    """Folder -> folders it may import, from the table under ``## Import rule``."""
    text = DOC.read_text() if text is None else text
    section = text.split("## Import rule", 1)[1].split("\n## ", 1)[0]
    rule = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rule[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[1]))
    assert rule, "docs/architecture.md has no import rule table"
    return rule


def folder_of(module: str) -> str:
    """The folder a module of mmx belongs to (``mmx`` for the top level)."""
    parts = module.split(".")
    if module == "mmx.__main__":
        return "cli"  # ``python -m mmx`` is the command line
    if len(parts) == 1 or (parts[1] in TOP_LEVEL_MODULES) or not (PACKAGE / parts[1]).is_dir():
        return TOP
    return parts[1]


def _module_name(file: Path) -> str:
    parts = file.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every mmx module, package or name ``source`` imports, at any depth of its code."""
    package = module if is_package else module.rpartition(".")[0]
    return {n for n in imported_names(source, package) if n == "mmx" or n.startswith("mmx.")}


def violations(source: str, module: str, rule: dict[str, set[str]], *,
               is_package: bool = False) -> list[str]:
    """Imports of ``module`` that its folder's row does not allow."""
    own = folder_of(module)
    allowed = rule[own] | {own}
    bad = {name for name in imported_modules(source, module, is_package=is_package)
           if folder_of(name) not in allowed}
    # ``from mmx.serving.inference import Predictor``: name the module, not also the class
    return sorted(f"{module} ({own}) imports {name} ({folder_of(name)})"
                  for name in bad if name.rpartition(".")[0] not in bad)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_keeps_the_import_rule():
    rule = import_rule()
    found = []
    for file in _modules():
        found += violations(file.read_text(), _module_name(file), rule,
                            is_package=file.name == "__init__.py")
    assert not found, ("imports against the rule of docs/architecture.md:\n"
                       + "\n".join(found))


def test_every_folder_has_a_row_and_rows_name_folders():
    rule = import_rule()
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders | {TOP} == set(rule), "add or remove the row of a folder in the rule table"
    for row, allowed in rule.items():
        assert allowed <= set(rule) - {row}, f"row {row} names an unknown folder"


def test_the_top_level_holds_only_the_shared_modules():
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat <= TOP_LEVEL_MODULES, f"put {sorted(flat - TOP_LEVEL_MODULES)} in a folder"


def test_the_rule_is_a_dag():
    rule = import_rule()
    state: dict[str, str] = {}

    def visit(node: str) -> None:
        assert state.get(node) != "open", f"the import rule has a cycle through {node}"
        if node not in state:
            state[node] = "open"
            for nxt in rule[node]:
                visit(nxt)
            state[node] = "done"

    for node in rule:
        visit(node)


def test_the_check_sees_a_forbidden_import_even_inside_a_function():
    rule = {"mmx": set(), "model": {"mmx"}, "serving": {"mmx", "model"}}
    lazy = "def f():\n    from mmx.serving.inference import Predictor\n"
    assert violations(lazy, "mmx.model.package", rule) == [
        "mmx.model.package (model) imports mmx.serving.inference (serving)"]
    assert violations("from mmx import serving", "mmx.model.x", rule)
    assert violations("from ..serving import inference", "mmx.model.x", rule)
    assert not violations("from mmx.model import nets\nfrom mmx import __version__",
                          "mmx.serving.api", rule)
