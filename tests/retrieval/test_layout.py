"""The package layout's rules, read from the import statements: one stage never reaches into another's
internals the wrong way, so each subpackage can be read and changed on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "retrieval"
# What each subpackage may not import (besides itself, everything else is allowed).
FORBIDDEN = {
    "index": ("retrieval.reader", "retrieval.training", "retrieval.service"),
    "reader": ("retrieval.index", "retrieval.training", "retrieval.service"),
    "training": ("retrieval.service",),
}


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement of the file, top level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_a_stage_does_not_import_what_its_docstring_forbids(subpackage):
    offending = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / subpackage).glob("*.py")
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN[subpackage])
    }
    assert not offending


def test_only_the_command_line_imports_the_service():
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "service" not in path.relative_to(PACKAGE).parts
        and any(name.startswith("retrieval.service") for name in imported_modules(path))
    }
    assert importers == {"__main__.py"}
