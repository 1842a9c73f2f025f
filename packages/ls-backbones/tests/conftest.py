"""Shared checks for ls-backbones tests."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn


def assert_backbone_contract(backbone: nn.Module, input_shape: Sequence[int]) -> OrderedDict:
    """Run ``backbone`` on a random input of ``input_shape`` and check its declarations.

    Checks: the output is an OrderedDict whose keys are ``output_shape()``'s in order; each
    output is 5-D with the declared channels and exactly ``input // stride`` voxels per axis;
    ``size_divisibility`` is a 3-tuple that ``input_shape`` satisfies. Returns the outputs.
    """
    div = backbone.size_divisibility
    assert isinstance(div, tuple) and len(div) == 3, f"size_divisibility {div!r} is not a 3-tuple"
    assert all(s % d == 0 for s, d in zip(input_shape[-3:], div, strict=True)), (
        f"test input {tuple(input_shape)} does not satisfy size_divisibility {div}"
    )
    spec = backbone.output_shape()
    assert isinstance(spec, OrderedDict) and len(spec) > 0
    for name, fs in spec.items():
        assert isinstance(fs.stride, tuple) and len(fs.stride) == 3, (name, fs)
        assert all(isinstance(s, int) and s >= 1 for s in fs.stride), (name, fs)
        # every stride divides the declared divisibility, so input // stride is exact
        assert all(d % s == 0 for d, s in zip(div, fs.stride, strict=True)), (name, fs.stride, div)
    x = torch.randn(*input_shape)
    with torch.no_grad():
        out = backbone(x)
    assert isinstance(out, OrderedDict), type(out)
    assert list(out) == list(spec), (list(out), list(spec))
    b, _, d, h, w = input_shape
    for name, fs in spec.items():
        expected = (b, fs.channels, d // fs.stride[0], h // fs.stride[1], w // fs.stride[2])
        assert tuple(out[name].shape) == expected, (name, tuple(out[name].shape), expected)
        assert torch.isfinite(out[name]).all(), name
    return out


@pytest.fixture
def check_contract() -> Callable[[nn.Module, Sequence[int]], OrderedDict]:
    return assert_backbone_contract
