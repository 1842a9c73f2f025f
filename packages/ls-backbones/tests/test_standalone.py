"""ls-backbones stands alone: torch and ls-core (standard library only) are its dependencies, and it
imports no other ls-* package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]
CORE = PACKAGE.parent / "ls-core"
SIBLINGS = ("ls_ops", "ls_detection", "ls_data", "ls_train")


def test_runtime_requirements_are_torch_and_ls_core() -> None:
    runtime = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [r.split(">")[0].split("=")[0].strip() for r in runtime] == ["torch", "ls-core"], runtime


def test_sources_import_only_stdlib_torch_ls_core_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "ls_core", "ls_backbones"}
    for path in sorted((PACKAGE / "src" / "ls_backbones").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            bad = [r for r in roots if r not in allowed]
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"


@pytest.mark.slow(seconds=5)
def test_installed_wheel_works_without_sibling_packages(tmp_path: Path) -> None:
    """pip-install the distribution (and ls-core) into an empty folder and use every preset from it,
    in a fresh interpreter where importing any other ls-* package fails."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(tmp_path), str(CORE), str(PACKAGE)],
        check=True,
    )  # fmt: skip
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {SIBLINGS!r}:
                    raise ImportError(f"{{name}} is not installed in this environment")
        sys.meta_path.insert(0, Block())
        import torch
        import ls_backbones
        assert ls_backbones.__file__.startswith({str(tmp_path)!r}), ls_backbones.__file__
        net = ls_backbones.create_backbone("resnet3d_18_fpn", out_features=("p2", "p3"))
        out = net(torch.randn(1, 1, 16, 16, 16))
        assert list(out) == ["p2", "p3", "p4"], list(out)
        for name in ("vitdet3d_s_sfp", "hiera3d_t_fpn"):
            ls_backbones.create_backbone(name)
        assert not [m for m in sys.modules if m.split(".")[0] in {SIBLINGS!r}]
        """
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
