"""ls_ops.roi_align3d (CPU kernels) against the reference, torchvision's roi_align, and torch's op checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ls_ops
from ls_ops import reference

# Deterministic examples (CI reruns see the same cases) and no deadline (2 shared cores).
PROPERTY = settings(derandomize=True, deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- against the reference --------------------------------------------------------------------

triples = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
scales = st.one_of(st.sampled_from([1.0, 0.5, 0.25]),
                   st.tuples(*[st.sampled_from([1.0, 0.5, 0.25, 1 / 3, 2.0])] * 3))
ratios = st.one_of(st.integers(-1, 3), st.tuples(st.integers(-1, 2), st.integers(0, 3), st.integers(-1, 2)))


@st.composite
def roi_align_case(draw: st.DrawFn) -> dict:
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    batch = draw(st.integers(1, 2))
    channels = draw(st.integers(1, 4))
    shape = (batch, channels, draw(st.integers(1, 6)), draw(st.integers(1, 7)), draw(st.integers(1, 8)))
    num_rois = draw(st.integers(0, 5))
    scale = draw(scales)
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    # rois in input coordinates / scale, partly or wholly outside the volume, some inverted
    extent = torch.tensor(shape[2:], dtype=dtype) / torch.tensor(scale, dtype=dtype)
    lo = (torch.rand(num_rois, 3, generator=g, dtype=dtype) * 1.6 - 0.4) * extent
    size = (torch.rand(num_rois, 3, generator=g, dtype=dtype) * 1.2 - 0.1) * extent
    if draw(st.booleans()):  # snap to a quarter-voxel grid: samples land on borders and integers
        lo, size = (lo * 4).round() / 4, (size * 4).round() / 4
    index = torch.randint(0, batch, (num_rois, 1), generator=g).to(dtype)
    return {
        "input": torch.randn(shape, generator=g, dtype=dtype),
        "rois": torch.cat([index, lo, lo + size], dim=1),
        "output_size": draw(triples),
        "spatial_scale": scale,
        "sampling_ratio": draw(ratios),
        "aligned": draw(st.booleans()),
    }


def tolerance(dtype: torch.dtype) -> dict:
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


@PROPERTY
@given(roi_align_case())
def test_forward_matches_reference(case: dict) -> None:
    out = ls_ops.roi_align3d(**case)
    expected = reference.roi_align3d(**case)
    num_rois, channels = case["rois"].shape[0], case["input"].shape[1]
    assert out.shape == expected.shape == (num_rois, channels, *case["output_size"])
    assert out.dtype == case["input"].dtype
    torch.testing.assert_close(out, expected, **tolerance(out.dtype))


@PROPERTY
@given(roi_align_case())
@pytest.mark.slow(seconds=6)
def test_backward_matches_reference(case: dict) -> None:
    x = case["input"].clone().requires_grad_()
    out = ls_ops.roi_align3d(**{**case, "input": x})
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(x.grad, reference_input_grad(case, grad), **tolerance(x.dtype))


def reference_input_grad(case: dict, grad: torch.Tensor) -> torch.Tensor:
    """The gradient of the reference RoIAlign3D of ``case`` with respect to its input, for ``grad``."""
    x = case["input"].clone().requires_grad_()
    out = reference.roi_align3d(**{**case, "input": x})
    if not out.requires_grad:  # no sample touches the input
        return torch.zeros_like(x)
    (result,) = torch.autograd.grad(out, x, grad)
    return result


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampling_ratio", [-1, 3])
def test_wide_channels_and_long_bins_match_reference(dtype: torch.dtype, sampling_ratio: int) -> None:
    """37 channels (vector loops and register-block transposes with remainders), bins of up to
    11 voxels: many taps per bin (adaptive ratio) or taps with gaps between them (ratio 3)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 37, 9, 10, 11, generator=g, dtype=dtype, requires_grad=True)
    rois = torch.tensor([[0, -0.5, 0.2, 0.0, 9.0, 10.0, 11.0], [1, 1.3, -2.0, 0.7, 8.2, 9.9, 12.5],
                         [1, 0.0, 0.0, 0.0, 9.0, 10.0, 3.0]], dtype=dtype)
    args = ((1, 2, 3), (1.0, 1.0, 1.0), sampling_ratio, True)
    out = ls_ops.roi_align3d(x, rois, *args)
    expected = reference.roi_align3d(x, rois, *args)
    torch.testing.assert_close(out, expected, **tolerance(dtype))
    grad = torch.randn_like(out)
    (ours,) = torch.autograd.grad(out, x, grad)
    (theirs,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours, theirs, **tolerance(dtype))


def test_large_buffers_match_reference() -> None:
    """An input, channels-last copy and gradient of 5 MiB: the huge-page buffers and the
    parallel transposes over many 64 x 64 blocks."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1, 64, 16, 32, 40, generator=g, requires_grad=True)
    lo = torch.rand(6, 3, generator=g) * torch.tensor([10.0, 20.0, 30.0])
    rois = torch.cat([torch.zeros(6, 1), lo, lo + torch.tensor([6.0, 12.0, 9.0])], dim=1)
    out = ls_ops.roi_align3d(x, rois, 3, 1.0, 2, True)
    expected = reference.roi_align3d(x, rois, 3, 1.0, 2, True)
    torch.testing.assert_close(out, expected, **tolerance(torch.float32))
    grad = torch.randn_like(out)
    (ours,) = torch.autograd.grad(out, x, grad)
    (theirs,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours, theirs, **tolerance(torch.float32))


def test_list_of_boxes_equals_batch_index_rois() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, 7, generator=g)
    boxes = [torch.tensor([[0.5, 1.0, 1.5, 3.0, 4.0, 5.0]]), torch.tensor([[1.0, 0.0, 0.0, 4.0, 5.0, 6.0],
                                                                           [0.0, 2.0, 2.0, 2.0, 4.0, 4.0]])]
    rois = torch.tensor([[0, 0.5, 1.0, 1.5, 3.0, 4.0, 5.0], [1, 1.0, 0.0, 0.0, 4.0, 5.0, 6.0],
                         [1, 0.0, 2.0, 2.0, 2.0, 4.0, 4.0]])
    assert torch.equal(ls_ops.roi_align3d(x, boxes, 2), ls_ops.roi_align3d(x, rois, 2))
    assert ls_ops.roi_align3d(x, [], 2).shape == (0, 3, 2, 2, 2)


def test_module_and_layouts() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 6, 7, 8, generator=g)
    rois = torch.tensor([[0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0], [0, 1.2, 2.3, 0.4, 4.0, 5.5, 6.1]])
    module = ls_ops.RoIAlign3d((2, 3, 4), spatial_scale=(1.0, 0.5, 0.5), sampling_ratio=2, aligned=True)
    expected = module(x, rois)
    assert "output_size=(2, 3, 4)" in repr(module)
    # channels-last and non-contiguous inputs / rois give the same result
    assert torch.equal(module(x.to(memory_format=torch.channels_last_3d), rois), expected)
    wide = torch.randn(1, 8, 6, 7, 16, generator=g)
    wide[..., ::2] = x
    assert torch.equal(module(wide[..., ::2], rois), expected)
    assert torch.equal(module(x, torch.cat([rois, rois], 1)[:, :7]), expected)
    assert torch.equal(module(x, rois.t().contiguous().t()), expected)


def test_half_and_bfloat16_compute_in_float32() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 5, 6, 7, generator=g)
    rois = torch.tensor([[0, 0.3, 0.2, 0.1, 4.0, 5.0, 6.0]])
    for dtype in (torch.float16, torch.bfloat16):
        out = ls_ops.roi_align3d(x.to(dtype), rois.to(dtype), 3, sampling_ratio=2)
        assert out.dtype == dtype
        expected = ls_ops.roi_align3d(x.to(dtype).float(), rois.to(dtype).float(), 3, sampling_ratio=2)
        torch.testing.assert_close(out, expected.to(dtype))


def test_autocast_computes_in_float32_and_returns_input_dtype() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 5, 6, 7, generator=g).to(torch.bfloat16).requires_grad_()
    rois = torch.tensor([[0, 0.3, 0.2, 0.1, 4.0, 5.0, 6.0]])  # float32 rois: allowed under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ls_ops.roi_align3d(x, rois, 3, sampling_ratio=2)
    assert out.dtype == torch.bfloat16
    expected = ls_ops.roi_align3d(x.detach().float(), rois, 3, sampling_ratio=2).bfloat16()
    torch.testing.assert_close(out, expected)
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


# --- the CUDA kernels, run on the CPU (conftest.cuda_emulated) ---------------------------------


@settings(PROPERTY, max_examples=60)
@given(roi_align_case(), st.sampled_from([None, (3, 32), (1, 1)]))
def test_cuda_kernels_match_reference(cuda_emulated, case: dict, grid: tuple[int, int] | None) -> None:
    """The forward and backward kernels with the host wrappers' launch (blocks of 256 threads) or
    a grid small enough that each thread loops over many elements."""
    out = cuda_emulated.roi_align3d(**case, grid=grid)
    torch.testing.assert_close(out, reference.roi_align3d(**case), **tolerance(out.dtype))
    grad = torch.randn_like(out)
    geometry = {key: case[key] for key in ("spatial_scale", "sampling_ratio", "aligned")}
    grad_input = cuda_emulated.roi_align3d_backward(grad, case["rois"], case["input"].shape, **geometry,
                                                    grid=grid)
    torch.testing.assert_close(grad_input, reference_input_grad(case, grad), **tolerance(out.dtype))


def test_cuda_kernels_ignore_rois_outside_the_batch(cuda_emulated) -> None:
    """A batch index outside [0, B) (the Python wrapper rejects it in eager mode, a compiled graph
    does not check) gives zeros and no gradient instead of an access out of bounds."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, 6, 7, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, 0.5, 1.0, 1.5, 3.0, 4.0, 5.0], [2, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0],
                         [-1, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0], [1, 1.0, 0.0, 0.5, 4.0, 5.0, 6.0]],
                        dtype=torch.float64)
    inside = torch.tensor([0, 3])
    case = {"input": x, "rois": rois[inside], "output_size": 2, "spatial_scale": 1.0, "sampling_ratio": 2,
            "aligned": True}
    out = cuda_emulated.roi_align3d(x, rois, 2, 1.0, 2, True)
    assert torch.equal(out[1:3], torch.zeros_like(out[1:3]))
    torch.testing.assert_close(out[inside], reference.roi_align3d(**case), rtol=1e-12, atol=1e-12)
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grad_input = cuda_emulated.roi_align3d_backward(grad, rois, x.shape, 1.0, 2, True)
    torch.testing.assert_close(grad_input, reference_input_grad(case, grad[inside]), rtol=1e-12, atol=1e-12)


# --- offsets beyond 32 bits -------------------------------------------------------------------
# 1 x 2 x 2050 x 1024 x 1024 float32 inputs: 4.3e9 elements, a channel of 2.15e9 > 2**31. They are
# memory maps of sparse files (17 GB each, of which a few MB are written); the rois sit in the far
# corner, so every offset the kernels compute is beyond 2**31, and beyond 2**32 in channel 1. The
# same rois on the corner alone (a small dense tensor) give the expected values. Roi corners and
# bins are dyadic, so sample positions are exact in both coordinate systems.

BIG_DEPTH, BIG_SIDE = 2050, 1024
CORNER = (2040, 1000, 990)  # the written corner: [2040:, 1000:, 990:]
BIG_ROIS = torch.tensor([[0, 2043.25, 1003.5, 995.0, 2049.25, 1021.5, 1019.0],
                         [0, 2046.0, 1010.0, 1000.0, 2052.0, 1028.0, 1030.0]])  # crosses the far borders


def big_input(path, *, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(the big input, its written corner as a dense NCDHW tensor)."""
    shape = (1, BIG_DEPTH, BIG_SIDE, BIG_SIDE, 2) if channels_last else (1, 2, BIG_DEPTH, BIG_SIDE, BIG_SIDE)
    volume = torch.from_numpy(np.memmap(path, dtype=np.float32, mode="w+", shape=shape))
    x = volume.permute(0, 4, 1, 2, 3) if channels_last else volume
    g = torch.Generator().manual_seed(6)
    z, y, w = CORNER
    x[:, :, z:, y:, w:] = torch.randn(1, 2, BIG_DEPTH - z, BIG_SIDE - y, BIG_SIDE - w, generator=g)
    return x, x[:, :, z:, y:, w:].clone()


def corner_rois() -> torch.Tensor:
    return BIG_ROIS - torch.tensor([0.0, *CORNER, *CORNER])


def test_cpu_forward_offsets_beyond_32_bits(tmp_path) -> None:
    x, corner = big_input(tmp_path / "input.f32", channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)  # no layout copy of 17 GB
    out = ls_ops.roi_align3d(x, BIG_ROIS, 3, 1.0, 2, True)
    torch.testing.assert_close(out, reference.roi_align3d(corner, corner_rois(), 3, 1.0, 2, True),
                               **tolerance(torch.float32))


def test_cuda_kernels_offsets_beyond_32_bits(cuda_emulated, tmp_path) -> None:
    x, corner = big_input(tmp_path / "input.f32", channels_last=False)
    out = cuda_emulated.roi_align3d(x, BIG_ROIS, 3, 1.0, 2, True)
    case = {"input": corner, "rois": corner_rois(), "output_size": 3, "spatial_scale": 1.0,
            "sampling_ratio": 2, "aligned": True}
    torch.testing.assert_close(out, reference.roi_align3d(**case), **tolerance(torch.float32))
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    grad_input = np.memmap(tmp_path / "grad.f32", dtype=np.float32, mode="w+", shape=tuple(x.shape))
    cuda_emulated.roi_align3d_backward(grad, BIG_ROIS, x.shape, 1.0, 2, True, out=grad_input)
    z, y, w = CORNER
    written = torch.from_numpy(grad_input[:, :, z:, y:, w:])
    torch.testing.assert_close(written, reference_input_grad(case, grad), **tolerance(torch.float32))


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, (1, 2, 3)])
def test_gradcheck(aligned: bool, sampling_ratio: int | tuple) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 0.9, 3.1, 4.2, 5.3], [1, -0.7, 1.1, 2.2, 2.4, 6.5, 4.4],
                         [1, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0]], dtype=torch.float64)
    fn = lambda t: ls_ops.roi_align3d(t, rois, (2, 2, 3), (1.0, 0.75, 1.25), sampling_ratio, aligned)
    assert torch.autograd.gradcheck(fn, (x,))


def test_double_backward_raises() -> None:
    x = torch.randn(1, 1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    out = ls_ops.roi_align3d(x, rois, 2)
    grad_out = torch.randn_like(out, requires_grad=True)
    (grad,) = torch.autograd.grad(out, x, grad_out, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


# --- degenerate case: torchvision's 2-D roi_align ---------------------------------------------


def _planar_case(depth: int, seed: int, dtype: torch.dtype) -> tuple:
    """A volume constant along z with rois spanning all of z, and the 2-D problem it equals."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 3, 11, 13, generator=g, dtype=dtype)
    volume = image[:, :, None].expand(-1, -1, depth, -1, -1).contiguous()
    n = 16
    yx = torch.rand(n, 2, generator=g, dtype=dtype) * torch.tensor([13.0, 15.0], dtype=dtype) - 1
    hw = torch.rand(n, 2, generator=g, dtype=dtype) * 9
    index = torch.randint(0, 2, (n, 1), generator=g).to(dtype)
    z1, z2 = torch.zeros(n, 1, dtype=dtype), torch.full((n, 1), float(depth), dtype=dtype)
    rois3 = torch.cat([index, z1, yx, z2, yx + hw], dim=1)
    rois2 = torch.cat([index, yx[:, 1:], yx[:, :1], (yx + hw)[:, 1:], (yx + hw)[:, :1]], dim=1)  # x1 y1 x2 y2
    return image, volume, rois3, rois2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 1, -1])
def test_depth_one_equals_torchvision(dtype: torch.dtype, aligned: bool, sampling_ratio: int) -> None:
    """The same values as torchvision up to the last bits: the separable CPU kernel sums a bin's
    samples axis by axis, torchvision sample by sample (measured: <= 4 ulps)."""
    image, volume, rois3, rois2 = _planar_case(1, 5, dtype)
    image.requires_grad_()
    volume = image[:, :, None].detach().clone().requires_grad_()
    out3 = ls_ops.roi_align3d(volume, rois3, (1, 4, 5), 1.0,
                              (1, sampling_ratio, sampling_ratio) if sampling_ratio > 0 else -1, aligned)
    out2 = torchvision.ops.roi_align(image, rois2, (4, 5), 1.0, sampling_ratio, aligned)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 1e-14}
    torch.testing.assert_close(out3[:, :, 0], out2, **tol)
    assert out2.abs().max() > 1  # the rois sample the image
    grad = torch.randn_like(out2)
    out3.backward(grad[:, :, None])
    out2.backward(grad)
    torch.testing.assert_close(volume.grad[:, :, 0], image.grad, **tol)
    assert image.grad.abs().max() > 1


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_z_constant_volume_equals_torchvision(aligned: bool, scale: float) -> None:
    depth = 5
    image, volume, rois3, rois2 = _planar_case(depth, 6, torch.float64)
    rois3[:, 4] = depth / scale  # rois span the whole z extent [0, depth) in input coordinates
    for od in (1, 3):
        out3 = ls_ops.roi_align3d(volume, rois3, (od, 4, 3), scale, (2, 2, 2), aligned)
        out2 = torchvision.ops.roi_align(image, rois2, (4, 3), scale, 2, aligned)
        for z in range(od):
            torch.testing.assert_close(out3[:, :, z], out2, rtol=1e-12, atol=1e-12)
    # gradient: the 3-D gradient summed over z is the 2-D gradient
    volume = volume.requires_grad_()
    image = image.requires_grad_()
    grad = torch.randn(rois2.shape[0], 3, 4, 3, dtype=torch.float64)
    ls_ops.roi_align3d(volume, rois3, (1, 4, 3), scale, 2, aligned).backward(grad[:, :, None])
    torchvision.ops.roi_align(image, rois2, (4, 3), scale, 2, aligned).backward(grad)
    torch.testing.assert_close(volume.grad.sum(2), image.grad, rtol=1e-12, atol=1e-12)


# --- torch.library checks and torch.compile -------------------------------------------------


def test_opcheck_roi_align3d() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 0.9, 3.1, 4.2, 5.3], [1, -0.7, 1.1, 2.2, 2.4, 6.5, 4.4]],
                        dtype=torch.float64)
    torch.library.opcheck(torch.ops.ls_ops.roi_align3d.default,
                          (x, rois, [1.0, 0.5, 1.0], [2, 3, 2], [2, -1, 1], True))
    grad = torch.randn(2, 3, 2, 3, 2, generator=g, dtype=torch.float64)
    torch.library.opcheck(torch.ops.ls_ops.roi_align3d_backward.default,
                          (grad, rois, [1.0, 0.5, 1.0], [2, 3, 2], [2, -1, 1], True, 2, 3, 4, 5, 6),
                          test_utils=("test_schema", "test_faketensor"))


def test_compile_fullgraph() -> None:
    def pool_and_score(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        pooled = ls_ops.roi_align3d(features * 2, rois, (2, 2, 2), (1.0, 0.5, 0.5), 2, True)
        return pooled.flatten(1).sum(1)

    compiled = torch.compile(pool_and_score, fullgraph=True, backend="aot_eager")
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 2, 4, 8, 8, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 1.0, 1.0, 3.0, 7.0, 6.0]])
    out = compiled(x, rois)
    torch.testing.assert_close(out, pool_and_score(x, rois))
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.slow(seconds=5)
def test_compile_fullgraph_inductor() -> None:
    """The default backend (inductor) generates and compiles C++ around the op: ~25 s on 2 cores."""
    def pool(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return ls_ops.roi_align3d(features.relu(), rois, 2, (1.0, 0.5, 0.5), -1, False).amax(dim=(2, 3, 4))

    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 4, 8, 8, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 1.0, 1.0, 3.0, 7.0, 6.0], [1, 0.0, 0.0, 0.0, 4.0, 8.0, 8.0]])
    out = torch.compile(pool, fullgraph=True)(x, rois)
    torch.testing.assert_close(out, pool(x, rois))
    out.sum().backward()
    assert x.grad is not None


def test_results_do_not_depend_on_the_thread_count() -> None:
    """The backward splits the gradient into z slabs by thread count (16 z planes: slabs of 4, 2, 1)."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 40, 16, 9, 9, generator=g, requires_grad=True)
    lo = torch.rand(30, 3, generator=g) * torch.tensor([12.0, 6.0, 6.0])
    rois = torch.cat([torch.randint(0, 2, (30, 1), generator=g).float(), lo, lo + 3], dim=1)
    grad = torch.randn(30, 40, 3, 3, 3, generator=g)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            out = ls_ops.roi_align3d(x, rois, 3, 1.0, -1, True)
            (grad_x,) = torch.autograd.grad(out, x, grad)
            results.append((out, grad_x))
    finally:
        torch.set_num_threads(threads)
    for out, grad_x in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad_x, results[0][1])
