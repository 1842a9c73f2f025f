"""The plugin's modules keep torch's model stack (torchvision, triton) out of napari's process.

With Mesa's software OpenGL (llvmpipe) loaded for napari's canvas, importing triton afterwards
crashes the process; the model runs in a prediction process of its own (ls_napari.predict_process).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import ls_napari.evaluate_widget, ls_napari.reader, ls_napari.sample_data, ls_napari.segment_widget
import ls_napari.writer
from ls_napari.evaluation import matching_settings
from ls_napari.model import experiment_names
matching_settings(), experiment_names()
from ls_napari.sample_data import synthetic_sample
synthetic_sample((8, 32, 32))
loaded = sorted(m for m in ("torchvision", "triton", "ls_detection") if m in sys.modules)
print("loaded:", loaded)
"""


@pytest.mark.slow(seconds=5)
def test_plugin_modules_do_not_import_the_model_stack():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "loaded: []" in run.stdout, run.stdout
