"""CUDA kernels against the CPU kernels; skipped without a CUDA device or a CUDA build of ls_ops."""

from __future__ import annotations

import pytest
import torch

import ls_ops

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not ls_ops.build_info()["cuda"], reason="ls_ops was built without CUDA kernels"),
]


def random_boxes(n: int, extent: float, max_size: float, g: torch.Generator,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n, 6)`` boxes with low corners in ``[0, extent)`` and sides in ``(0, max_size]``."""
    lo = torch.rand(n, 3, generator=g, dtype=dtype) * extent
    return torch.cat([lo, lo + torch.rand(n, 3, generator=g, dtype=dtype) * max_size + 1e-3], dim=1)


def _case(dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 9, 10, 11, generator=g, dtype=dtype)
    n = 40
    lo = torch.rand(n, 3, generator=g, dtype=dtype) * 14 - 2
    size = torch.rand(n, 3, generator=g, dtype=dtype) * 8 - 0.5
    index = torch.randint(0, 2, (n, 1), generator=g).to(dtype)
    return x, torch.cat([index, lo, lo + size], dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2, (1, 2, 3)])
def test_roi_align3d_cuda_matches_cpu(dtype: torch.dtype, aligned: bool, sampling_ratio) -> None:
    x, rois = _case(dtype, 0)
    args = ((3, 2, 4), (1.0, 0.5, 0.75), sampling_ratio, aligned)
    x_cpu = x.clone().requires_grad_()
    x_gpu = x.cuda().requires_grad_()
    out_cpu = ls_ops.roi_align3d(x_cpu, rois, *args)
    out_gpu = ls_ops.roi_align3d(x_gpu, rois.cuda(), *args)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, **tol)
    grad = torch.randn_like(out_cpu)
    out_cpu.backward(grad)
    out_gpu.backward(grad.cuda())
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, **tol)


def test_roi_align3d_cuda_gradcheck_and_autocast() -> None:
    x, rois = _case(torch.float64, 1)
    x = x[:, :2, :5, :6, :7].cuda().requires_grad_()
    rois = rois[:6].cuda()
    assert torch.autograd.gradcheck(lambda t: ls_ops.roi_align3d(t, rois, 2, 1.0, 2, True), (x,))
    with torch.autocast("cuda", dtype=torch.float16):
        out = ls_ops.roi_align3d(x.detach().half(), rois.float(), 2, 1.0, 2, True)
    assert out.dtype == torch.float16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.9])
def test_nms3d_cuda_matches_cpu(dtype: torch.dtype, threshold: float) -> None:
    g = torch.Generator().manual_seed(2)
    boxes = random_boxes(3000, 40.0, 12.0, g, dtype)
    scores = torch.rand(3000, generator=g, dtype=dtype)
    keep_cpu = ls_ops.nms3d(boxes, scores, threshold)
    keep_gpu = ls_ops.nms3d(boxes.cuda(), scores.cuda(), threshold)
    assert keep_gpu.device.type == "cuda"
    assert torch.equal(keep_gpu.cpu(), keep_cpu)


def test_opcheck_cuda() -> None:
    x, rois = _case(torch.float64, 3)
    args = (x.cuda().requires_grad_(), rois.cuda(), [1.0, 1.0, 1.0], [2, 2, 2], [2, 2, 2], True)
    torch.library.opcheck(torch.ops.ls_ops.roi_align3d.default, args)
    g = torch.Generator().manual_seed(4)
    boxes = random_boxes(100, 20.0, 6.0, g, torch.float32).cuda()
    torch.library.opcheck(torch.ops.ls_ops.nms3d.default, (boxes, torch.rand(100, device="cuda"), 0.5))
