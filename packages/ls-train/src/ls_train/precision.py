"""The precision of the model's forward pass: ``trainer.amp``, ``evaluation.amp`` and ``predict.amp``.

Each takes ``auto``, ``bf16`` or ``none``:

- ``none``: float32, the reference;
- ``bf16``: ``torch.autocast(dtype=torch.bfloat16)`` around the forward pass (convolutions and
  matrix products in bf16; box coordinates, anchors, box decoding and scores stay float32, see
  ls-detection); asked for explicitly it runs on any device, even a CPU without bf16 kernels,
  where it is correct but many times slower;
- ``auto``: bf16 where it is fast, float32 elsewhere: on CUDA, and on CPUs whose oneDNN has bf16
  kernels (AVX-512 BF16 or AMX; :func:`cpu_has_fast_bf16`).

Measured with the quickstart model on a CPU with AVX-512 BF16 (``benchmarks/throughput.py``,
``benchmarks/precision.py``, ``bench-accuracy -- trainer.amp=bf16``): see the README and the
CHANGELOG of ls-train for the figures.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["AMP_CHOICES", "autocast", "autocast_dtype", "cpu_has_fast_bf16", "precision_name"]

AMP_CHOICES = ("auto", "bf16", "none")
"""The values of ``trainer.amp``, ``evaluation.amp`` and ``predict.amp`` (this module imports torch
only when a function is called: the config checks use this tuple without it)."""


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions in oneDNN's native kernels (AVX-512 BF16 or AMX)."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(amp: str, device: torch.device | str, *, key: str = "amp") -> torch.dtype | None:
    """The autocast dtype that ``amp`` gives on ``device`` (None: float32).

    Raises:
        ValueError: ``amp`` is not one of :data:`AMP_CHOICES` (the message names ``key``).
    """
    import torch

    if amp not in AMP_CHOICES:
        raise ValueError(f"{key} must be one of {', '.join(AMP_CHOICES)}; got {amp!r}")
    kind = torch.device(device).type
    fast = kind == "cuda" or (kind == "cpu" and cpu_has_fast_bf16())
    return torch.bfloat16 if amp == "bf16" or (amp == "auto" and fast) else None


def autocast(dtype: torch.dtype | None, device: torch.device | str) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for None."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def precision_name(dtype: torch.dtype | None) -> str:
    """``bf16 autocast`` or ``float32``, for the lines a command prints."""
    import torch

    return "float32" if dtype is None else f"{'bf16' if dtype == torch.bfloat16 else dtype} autocast"
