"""``trainer.amp``, ``evaluation.amp``, ``predict.amp``: which precision each value gives where."""

from __future__ import annotations

import contextlib

import pytest
import torch

from ls_train import precision
from ls_train.config import ConfigError, evaluation_config, trainer_config


@pytest.mark.parametrize("fast_cpu", [True, False])
def test_auto_is_bf16_where_fast_and_accurate_and_explicit_values_hold(monkeypatch, fast_cpu):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_cpu)
    bf16 = torch.bfloat16
    assert precision.autocast_dtype("auto", "cuda") == bf16
    assert precision.autocast_dtype("auto", torch.device("cpu")) == (bf16 if fast_cpu else None)
    for device in ("cpu", "cuda"):
        for training in (False, True):
            assert precision.autocast_dtype("bf16", device, training=training) == bf16
            assert precision.autocast_dtype("none", device, training=training) is None
    # training: auto is bf16 on CUDA only (the CPU keeps float32 until bf16 training is the default)
    assert precision.autocast_dtype("auto", "cuda", training=True) == bf16
    assert precision.autocast_dtype("auto", "cpu", training=True) is None


def test_the_probe_answers_what_onednn_says():
    expected = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert precision.cpu_has_fast_bf16() is bool(expected)


def test_a_bad_value_names_its_key():
    with pytest.raises(ValueError, match=r"predict\.amp must be one of auto, bf16, none; got 'fp16'"):
        precision.autocast_dtype("fp16", "cpu", key="predict.amp")
    with pytest.raises(ConfigError, match=r"evaluation\.amp must be one of"):
        evaluation_config({"evaluation": {"amp": "float16"}})
    with pytest.raises(ConfigError, match=r"trainer\.amp must be one of"):
        trainer_config({"trainer": {"amp": "fp8"}})


def test_the_context_and_the_name_follow_the_dtype():
    assert isinstance(precision.autocast(None, "cpu"), contextlib.nullcontext)
    with precision.autocast(torch.bfloat16, "cpu"):
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.bfloat16
    assert precision.precision_name(None) == "float32"
    assert precision.precision_name(torch.bfloat16) == "bf16 autocast"


def test_the_predict_summary_names_the_precision_the_tiles_ran_in(monkeypatch):
    """In-process, the summary names the precision ``auto`` chose here; with Ray workers on the CPU
    each worker decides by its own CPU, so the driver's choice is not claimed for them."""
    from types import SimpleNamespace

    from ls_train.predict.run import _Job

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)

    def line(use_ray: bool, amp: str = "auto", device: str = "cpu", name: str = "detector") -> str:
        job = SimpleNamespace(spec=SimpleNamespace(name=name, device=device), pc=SimpleNamespace(amp=amp),
                              use_ray=use_ray)
        return _Job.precision.fget(job)

    assert line(False) == ", bf16 autocast"
    assert line(False, amp="none") == ", float32"
    assert "per worker" in line(True)
    assert line(True, amp="none") == ", float32"
    assert line(True, device="cuda") == ", bf16 autocast"
    assert line(True, name="threshold") == ""
