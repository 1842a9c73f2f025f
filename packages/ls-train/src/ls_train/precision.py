"""The precision of the model's forward pass: ``trainer.amp``, ``evaluation.amp`` and ``predict.amp``.

Each takes ``auto``, ``bf16`` or ``none``:

- ``none``: float32, the reference;
- ``bf16``: ``torch.autocast(dtype=torch.bfloat16)`` around the forward pass (convolutions and
  matrix products in bf16; box coordinates, anchors, box decoding and scores stay float32, see
  ls-detection); asked for explicitly it runs on any device, even a CPU without bf16 kernels,
  where it is correct but many times slower;
- ``auto``: bf16 where it is fast and measured to keep accuracy, float32 elsewhere. On CUDA:
  bf16. On CPUs whose oneDNN has bf16 kernels (AVX-512 BF16 or AMX; :func:`cpu_has_fast_bf16`):
  bf16 for inference (``ls-predict``, ``ls-evaluate``), float32 for training (``trainer.amp``,
  training and its validations).

Measured with the quickstart model on a CPU with AVX-512 BF16 (README, ls-train's CHANGELOG):
inference in bf16 finds 99.7 % of the float32 objects again at IoU 0.9 with ap@50/75 within
0.002, 1.7x faster per tile (``benchmarks/precision.py``, ``benchmarks/throughput.py``). A
quickstart trained in bf16 steps 1.7x faster, and its test figures lie within the spread between
training seeds (three seeds each, ``bench-accuracy -- trainer.seed=S [trainer.amp=bf16]``: ap@75
0.900 against 0.912 in float32, seeds ranging 0.86-0.94; blobs ap@75 0.466 against 0.495, range
0.43-0.56). Training stays float32 on the CPU unless asked until the full test suite has run with
bf16 training on such a CPU.
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


def autocast_dtype(
    amp: str, device: torch.device | str, *, key: str = "amp", training: bool = False
) -> torch.dtype | None:
    """The autocast dtype that ``amp`` gives on ``device`` (None: float32) for inference, or with
    ``training`` for a training run (``auto`` is then bf16 on CUDA only).

    Raises:
        ValueError: ``amp`` is not one of :data:`AMP_CHOICES` (the message names ``key``).
    """
    import torch

    if amp not in AMP_CHOICES:
        raise ValueError(f"{key} must be one of {', '.join(AMP_CHOICES)}; got {amp!r}")
    kind = torch.device(device).type
    fast = kind == "cuda" or (kind == "cpu" and not training and cpu_has_fast_bf16())
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
