"""Fixtures of the ls-ops tests: the CUDA kernels compiled for and run on the CPU.

``cuda_emulated`` compiles ``csrc/cuda/*_kernels.cuh`` (the very kernels the CUDA build
launches) as host C++ with ``cuda_emulation/cuda_shim.h``, so that their indexing, grid-stride
loops, shared memory, bitmask and sweep are checked against the reference on every machine,
with or without a GPU. The host wrappers around them (``csrc/cuda/*.cu``) are replayed here in
Python: zero-filled outputs, the launch configuration, the sort before NMS.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from ls_ops._args import float_triple, int_triple

HERE = Path(__file__).parent
SOURCE = HERE / "cuda_emulation" / "emulated_kernels.cpp"
ROI_ALIGN_THREADS = 256  # kRoiAlignThreads of roi_align3d_kernels.cuh
MAX_BLOCKS = 65536  # num_blocks() of roi_align3d_cuda.cu


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


class EmulatedCudaKernels:
    """The CUDA kernels of ls_ops run on the CPU, with the host wrappers' semantics."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        for name in ("roi_align3d_forward", "roi_align3d_backward"):
            for suffix in ("f32", "f64"):
                fn = getattr(self._lib, f"{name}_{suffix}")
                fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                fn.restype = None
        for suffix in ("f32", "f64"):
            fn = getattr(self._lib, f"nms3d_{suffix}")
            fn.argtypes = [ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            fn.restype = ctypes.c_int64

    @staticmethod
    def _suffix(dtype: torch.dtype) -> str:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"the emulated kernels take float32 or float64, got {dtype}")
        return "f32" if dtype == torch.float32 else "f64"

    @staticmethod
    def _launch(total: int, grid: tuple[int, int] | None) -> tuple[int, int]:
        """(blocks, threads): the host wrapper's, or ``grid`` (a smaller grid loops over the elements)."""
        if grid is not None:
            return grid
        return min(-(-total // ROI_ALIGN_THREADS), MAX_BLOCKS), ROI_ALIGN_THREADS

    def _call_roi_align(self, name: str, data: Tensor, rois: Tensor, shape: Sequence[int],
                        out_shape: Sequence[int], output_size: int | Sequence[int],
                        spatial_scale: float | Sequence[float], sampling_ratio: int | Sequence[int],
                        aligned: bool, grid: tuple[int, int] | None, out: np.ndarray | None = None) -> Tensor:
        size = int_triple("output_size", output_size, minimum=1)
        dims = np.array([*shape, *size, *int_triple("sampling_ratio", sampling_ratio)], dtype=np.int64)
        scale = np.array(float_triple("spatial_scale", spatial_scale), dtype=np.float64)
        src = data.detach().contiguous().numpy()
        boxes = rois.detach().to(data.dtype).contiguous().numpy()
        if out is None:
            out = np.zeros(out_shape, dtype=src.dtype)  # at::zeros in the host wrappers
        elif out.shape != tuple(out_shape) or out.dtype != src.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {src.dtype} array of shape {tuple(out_shape)}, got "
                             f"{out.dtype} {out.shape}")
        total = src.size if name == "roi_align3d_backward" else out.size  # one thread per output element
        if src.size and out.size:
            blocks, threads = self._launch(total, grid)
            fn = getattr(self._lib, f"{name}_{self._suffix(data.dtype)}")
            fn(total, _pointer(src), _pointer(boxes), _pointer(scale), _pointer(dims), int(aligned),
               _pointer(out), blocks, threads)
        return torch.from_numpy(out)

    def roi_align3d(self, input: Tensor, rois: Tensor, output_size: int | Sequence[int],
                    spatial_scale: float | Sequence[float] = 1.0, sampling_ratio: int | Sequence[int] = -1,
                    aligned: bool = False, *, grid: tuple[int, int] | None = None) -> Tensor:
        """The CUDA forward on ``(K, 7)`` rois; ``grid`` = (blocks, threads) overrides the wrapper's."""
        size = int_triple("output_size", output_size, minimum=1)
        out_shape = (rois.shape[0], input.shape[1], *size)
        return self._call_roi_align("roi_align3d_forward", input, rois, input.shape, out_shape, size,
                                    spatial_scale, sampling_ratio, aligned, grid)

    def roi_align3d_backward(self, grad: Tensor, rois: Tensor, input_shape: Sequence[int],
                             spatial_scale: float | Sequence[float] = 1.0,
                             sampling_ratio: int | Sequence[int] = -1, aligned: bool = False, *,
                             grid: tuple[int, int] | None = None, out: np.ndarray | None = None) -> Tensor:
        """The CUDA backward: the input gradient of shape ``input_shape`` for the output gradient
        ``grad``, accumulated into ``out`` when given (zero-filled, e.g. a sparse memory map)."""
        return self._call_roi_align("roi_align3d_backward", grad, rois, input_shape, input_shape,
                                    tuple(grad.shape[2:]), spatial_scale, sampling_ratio, aligned, grid, out)

    def nms3d(self, boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        """The CUDA nms3d: stable sort by score, volumes, the mask kernel, the sweep."""
        n = boxes.shape[0]
        if n == 0:
            return torch.zeros(0, dtype=torch.int64)
        order = torch.sort(scores, descending=True, stable=True).indices
        ordered = boxes[order].contiguous()
        extent = ordered[:, 3:] - ordered[:, :3]
        volumes = (extent[:, 0] * extent[:, 1] * extent[:, 2]).contiguous().numpy()
        sorted_boxes = ordered.numpy()
        keep = np.empty(n, dtype=np.int64)
        count = getattr(self._lib, f"nms3d_{self._suffix(boxes.dtype)}")(
            n, float(iou_threshold), _pointer(sorted_boxes), _pointer(volumes), _pointer(keep))
        return order[torch.from_numpy(keep[:count])]


@pytest.fixture(scope="session")
def cuda_emulated(tmp_path_factory: pytest.TempPathFactory) -> EmulatedCudaKernels:
    """The CUDA kernels compiled with the host C++ compiler (CXX, else c++) and loaded with ctypes."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler (CXX, c++ or g++) to build the emulated CUDA kernels; "
                           "ls-ops itself needs one to build")
    library = tmp_path_factory.mktemp("cuda_emulation") / "emulated_kernels.so"
    command = [compiler, "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-ffp-contract=off", "-Wall",
               "-Werror", str(SOURCE), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"compiling {SOURCE} failed:\n{' '.join(command)}\n{result.stderr}")
    return EmulatedCudaKernels(library)
