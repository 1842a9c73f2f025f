"""ls-core depends on nothing: the standard library only, so every ls-* package may depend on it."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]

# imports every module of ls_core in a fresh interpreter and lists the top-level packages loaded
PROBE = """
import json, pkgutil, sys, importlib
import ls_core
for info in pkgutil.walk_packages(ls_core.__path__, "ls_core."):
    importlib.import_module(info.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_no_runtime_requirements() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == []


def test_every_module_loads_only_the_standard_library() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = set(json.loads(run.stdout))
    outside = loaded - set(sys.stdlib_module_names) - set(sys.builtin_module_names) - {"ls_core"}
    assert not {m for m in outside if not m.startswith("_")}, outside
