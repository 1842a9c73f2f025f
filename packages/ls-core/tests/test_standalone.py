"""ls-core depends on nothing: the standard library only, so every ls-* package may depend on it."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def test_no_runtime_requirements() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == []


def test_sources_import_only_the_standard_library_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"ls_core"}
    for path in sorted((PACKAGE / "src" / "ls_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            bad = [r for r in roots if r not in allowed]
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"
