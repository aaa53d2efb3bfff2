"""What a module imports, read from its source with ast: shared by the import-rule tests."""

from __future__ import annotations

import ast


def imported_names(source: str, package: str) -> set[str]:
    """Absolute names ``source`` imports, at any depth of its code (inside functions too).

    Each ``import X`` gives ``X``; each ``from X import a`` gives ``X`` and ``X.a`` (``a``
    may be a module or a name defined in ``X``: the caller keeps what it knows).
    ``package`` is the package relative imports start from (the module's own, or the
    package itself for an ``__init__.py``).
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names
