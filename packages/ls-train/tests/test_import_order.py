"""Every module where the config, the builders, ls-predict, the evaluator and the trainer meet
imports on its own, first in a fresh interpreter: their imports form no cycle (issue 19). A cycle
shows only when the module inside it is imported first, so each runs in its own process."""

from __future__ import annotations

import subprocess
import sys

import pytest

FIRST_IMPORTS = [
    "ls_train.config.validate",  # -> factory, predict.config -> predict -> trainer.faults
    "ls_train.config.compose",  # -> validate
    "ls_train.factory",  # -> config.sections, config.components
    "ls_train.predict.config",  # -> config.sections
    "ls_train.trainer.run",  # -> config.validate -> predict -> trainer.faults
    "ls_train.evaluation.evaluator",  # -> trainer.checkpoint; trainer.loop -> evaluation.evaluator
]


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"import {module} failed:\n{done.stderr[-3000:]}"


def test_importing_config_error_loads_neither_hydra_nor_torch() -> None:
    """``from ls_train.config import ConfigError`` (the commands' error handling, ls-napari) stays cheap."""
    code = (
        "import sys\n"
        "from ls_train.config import ConfigError, config_search_path\n"
        "print(sorted(m for m in ('torch', 'hydra', 'ls_train.config.validate') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
