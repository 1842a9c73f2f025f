"""Light-sheet augmentations: random_zoom, random_blur, random_stripes, random_intensity_scale."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ls_data.errors import DataError
from ls_data.transforms import (
    RandomBlur,
    RandomIntensityScale,
    RandomStripes,
    RandomZoom3D,
    boxes_from_masks,
    build_transforms,
)
from ls_data.transforms.intensity import gaussian_smooth


def make_sample(
    seed: int = 0,
    shape: tuple[int, int, int] = (8, 16, 20),
    n: int = 4,
    mask_dtype: torch.dtype = torch.uint8,
) -> tuple[torch.Tensor, dict, dict]:
    """Two channels and ``n`` box-shaped instances of random size and place (never empty)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((2, *shape), generator=g) * 100.0 + 10.0
    masks = torch.zeros((n, *shape), dtype=mask_dtype)
    for i in range(n):
        lo = [int(torch.randint(0, s, (), generator=g)) for s in shape]
        hi = [int(torch.randint(a + 1, s + 1, (), generator=g)) for a, s in zip(lo, shape, strict=True)]
        masks[i, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
    target = {
        "boxes": boxes_from_masks(masks),
        "labels": torch.arange(1, n + 1, dtype=torch.int64),
        "masks": masks,
        "scores": torch.linspace(0.1, 0.9, n),  # any other per-instance entry must follow
    }
    meta = {"spacing": (2.0, 0.5, 0.5), "origin": (10, 20, 30), "label_ids": [11 * (i + 1) for i in range(n)]}
    return image, target, meta


def seeded(transform, seed: int = 0):
    transform.generator = torch.Generator().manual_seed(seed)
    return transform


def numpy_boxes(masks: torch.Tensor) -> list[list[int]]:
    """Reference boxes: ``[min, max + 1)`` of the voxel indices on every axis."""
    boxes = []
    for mask in masks.numpy():
        idx = np.nonzero(mask)
        boxes.append([int(i.min()) for i in idx] + [int(i.max()) + 1 for i in idx])
    return boxes


def assert_aligned(image: torch.Tensor, target: dict, meta: dict, min_voxels: int = 1) -> None:
    masks = target["masks"]
    n = masks.shape[0]
    assert tuple(masks.shape[1:]) == tuple(image.shape[1:])
    assert set(torch.unique(masks.to(torch.int64)).tolist()) <= {0, 1}, "masks are not binary"
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 6)
    assert target["boxes"].tolist() == numpy_boxes(masks)
    assert target["labels"].shape == (n,) and target["scores"].shape == (n,) and len(meta["label_ids"]) == n
    assert bool((masks.flatten(1).sum(dim=1) >= min_voxels).all()), "an instance under min_voxels was kept"


def same_sample(a: tuple, b: tuple) -> bool:
    return (
        torch.equal(a[0], b[0])
        and a[1].keys() == b[1].keys()
        and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
        and a[2] == b[2]
    )


ALL = {
    "zoom": lambda p=1.0: RandomZoom3D(p=p),
    "zoom_aniso_random": lambda p=1.0: RandomZoom3D(
        scale=(0.5, 2.0), scale_z=(0.7, 1.5), random_window=True, p=p
    ),
    "blur": lambda p=1.0: RandomBlur(p=p),
    "stripes": lambda p=1.0: RandomStripes(p=p),
    "intensity_scale": lambda p=1.0: RandomIntensityScale(p=p, per_channel=True),
}


# --------------------------------------------------------------------------- all four


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shape_dtype_alignment_and_inputs_untouched(name: str, seed: int) -> None:
    image, target, meta = make_sample(seed=seed)
    before = ({k: v.clone() for k, v in target.items()}, dict(meta), image.clone())
    out = seeded(ALL[name](), seed)(image, target, meta)
    assert out[0].shape == image.shape and out[0].dtype == image.dtype
    assert out[1]["masks"].dtype == target["masks"].dtype
    assert_aligned(*out)
    # p=1 changes the image, unless a zoom drew a factor that rounds to the same sizes
    unzoomed = name.startswith("zoom") and out[2]["spacing"] == meta["spacing"]
    assert unzoomed or not torch.equal(out[0], image), "p=1 changed nothing"
    assert same_sample((image, target, meta), (before[2], before[0], before[1])), "an input was modified"


@pytest.mark.parametrize("name", list(ALL))
def test_p0_is_the_identity(name: str) -> None:
    image, target, meta = make_sample()
    out = seeded(ALL[name](p=0.0))(image, target, meta)
    assert same_sample(out, (image, target, meta))


@pytest.mark.parametrize("name", list(ALL))
def test_a_fixed_seed_is_deterministic_and_seeds_differ(name: str) -> None:
    samples = [make_sample(seed=s) for s in range(3)]
    runs = {}
    for seed in (5, 5, 6):
        transform = seeded(ALL[name](), seed)
        runs.setdefault(seed, []).append([transform(*s) for s in samples])
    assert all(same_sample(a, b) for a, b in zip(*runs[5], strict=True))
    assert not all(same_sample(a, b) for a, b in zip(runs[5][0], runs[6][0], strict=True))


@pytest.mark.parametrize("name", list(ALL))
def test_pickled_with_its_generator_gives_the_same_draws(name: str) -> None:
    transform = seeded(ALL[name](), 3)
    copy = pickle.loads(pickle.dumps(transform))  # as sent to spawned DataLoader workers
    sample = make_sample(seed=1)
    assert same_sample(transform(*sample), copy(*sample))


DEVICES = ["meta", *(["cuda"] if torch.cuda.is_available() else [])]
# the zoom selects instances by their voxel counts, which the meta device does not have
DEVICE_CASES = [
    (name, device) for device in DEVICES for name in ALL if not (name.startswith("zoom") and device == "meta")
]


@pytest.mark.parametrize(("name", "device"), DEVICE_CASES)
def test_the_sample_stays_on_its_device(name: str, device: str) -> None:
    """No CPU tensor is mixed into a sample on another device (an op mixing the meta device
    with a CPU tensor raises, as on a GPU); on CUDA the result equals the CPU one."""
    image, target, meta = make_sample()
    image = image.to(device)
    target = {k: v.to(device) for k, v in target.items()}
    out, out_target, _ = seeded(ALL[name]())(image, target, meta)
    assert out.device.type == device and out.shape == image.shape
    assert all(v.device.type == device for v in out_target.values())
    if device != "meta":
        cpu = seeded(ALL[name]())(*make_sample())
        torch.testing.assert_close(out.cpu(), cpu[0])
        assert torch.equal(out_target["masks"].cpu(), cpu[1]["masks"])


@pytest.mark.parametrize("name", list(ALL))
def test_integer_images_are_refused(name: str) -> None:
    image, target, meta = make_sample()
    with pytest.raises(DataError, match="floating-point"):
        ALL[name]()(image.to(torch.int32), target, meta)


def test_built_by_name_from_a_config_list() -> None:
    pipeline = build_transforms([
        {"name": "random_zoom", "p": 0.5, "scale": [0.7, 1.4], "scale_z": [0.8, 1.25], "min_voxels": 4},
        {"name": "random_blur", "p": 0.3, "sigma_yx": [0.5, 1.5], "sigma_z": [0.0, 1.0]},
        {"name": "random_stripes", "p": 0.3, "strength": [0.1, 0.5], "direction": "random"},
        {"name": "random_intensity_scale", "p": 0.5, "scale": [0.5, 2.0], "offset": [-0.1, 0.1]},
    ])  # fmt: skip
    names = [type(t).__name__ for t in pipeline]
    assert names == ["RandomZoom3D", "RandomBlur", "RandomStripes", "RandomIntensityScale"]
    assert pipeline[0].scale_z == (0.8, 1.25) and pipeline[1].sigma_z == (0.0, 1.0)
    pipeline.set_generator(torch.Generator().manual_seed(0))
    for seed in range(4):
        assert_aligned(*pipeline(*make_sample(seed=seed)))


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ({"name": "random_zoom", "scale": [0.0, 1.0]}, r"RandomZoom3D scale must satisfy 0 < low"),
        ({"name": "random_zoom", "scale": [1.4, 0.7]}, r"RandomZoom3D scale must be finite with low <= high"),
        ({"name": "random_zoom", "scale": 1.2}, r"RandomZoom3D scale must be a \(low, high\) pair"),
        ({"name": "random_zoom", "scale_z": [0.5, "a"]}, r"RandomZoom3D scale_z must be a \(low, high\)"),
        ({"name": "random_zoom", "min_voxels": 0}, r"RandomZoom3D: min_voxels must be an int >= 1"),
        ({"name": "random_zoom", "min_voxels": 2.5}, r"min_voxels"),
        ({"name": "random_zoom", "p": 1.5}, r"RandomZoom3D: p must be a probability"),
        ({"name": "random_blur", "sigma_yx": [-1.0, 1.0]}, r"RandomBlur sigma_yx must satisfy 0 <= low"),
        ({"name": "random_blur", "sigma_z": [2.0, 1.0]}, r"RandomBlur sigma_z must be finite with low <="),
        ({"name": "random_blur", "sigma_z": [0.0, float("inf")]}, r"RandomBlur sigma_z must be finite"),
        ({"name": "random_stripes", "strength": [0.5, 1.5]}, r"RandomStripes strength must satisfy low <= h"),
        ({"name": "random_stripes", "strength": [-0.1, 0.5]}, r"RandomStripes strength must satisfy 0 <="),
        ({"name": "random_stripes", "direction": "z"}, r"RandomStripes: direction must be 'x', 'y' or"),
        ({"name": "random_stripes", "smoothness": -1.0}, r"RandomStripes: smoothness must be a number >= 0"),
        ({"name": "random_intensity_scale", "scale": [0.0, 2.0]}, r"IntensityScale scale must satisfy 0 <"),
        ({"name": "random_intensity_scale", "offset": [0.2, -0.2]}, r"IntensityScale offset must be finite"),
        ({"name": "random_intensity_scale", "offset": "ab"}, r"RandomIntensityScale offset must be a \("),
        ({"name": "random_intensity_scale", "gain": [1, 2]}, r"unknown key 'gain'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(entry: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=r"transforms_list\[0\].*" + pattern):
        build_transforms([entry])


# --------------------------------------------------------------------------- random_zoom


def reference_zoom(image: torch.Tensor, masks: torch.Tensor, size_out: tuple[int, int, int]) -> tuple:
    """Resample the whole sample (F.interpolate: trilinear image, nearest-exact masks), then
    centre-crop or centre-pad (image: channel minimum; masks: 0) back to the input shape."""
    zoomed = F.interpolate(image[None], size=size_out, mode="trilinear", align_corners=False)[0]
    zoomed_masks = F.interpolate(masks[None].float(), size=size_out, mode="nearest-exact")[0]
    out = image.amin(dim=(1, 2, 3), keepdim=True).expand(image.shape).clone()
    out_masks = torch.zeros_like(masks)
    dst, src = [], []
    for n, m in zip(image.shape[1:], size_out, strict=True):
        cut, pad = max(0, (m - n) // 2), max(0, (n - m) // 2)
        length = min(n, m)
        dst.append(slice(pad, pad + length))
        src.append(slice(cut, cut + length))
    out[(slice(None), *dst)] = zoomed[(slice(None), *src)]
    out_masks[(slice(None), *dst)] = zoomed_masks[(slice(None), *src)].to(masks.dtype)
    return out, out_masks


@pytest.mark.parametrize(
    ("scale", "scale_z", "size_out"),
    [
        ((2.0, 2.0), None, (16, 32, 40)),  # zoom in: centre window
        ((0.5, 0.5), None, (4, 8, 10)),  # zoom out: padded with the channel minimum
        ((1.0, 1.0), (1.5, 1.5), (12, 16, 20)),  # z only: another anisotropy
        ((0.75, 0.75), (1.25, 1.25), (10, 12, 15)),
        ((1.3, 1.3), None, (10, 21, 26)),  # sizes rounded (20.8 -> 21), odd margins
        ((0.66, 0.66), None, (5, 11, 13)),  # 10.56 -> 11, 13.2 -> 13: odd padding
    ],
)
def test_zoom_matches_resample_then_crop_or_pad_reference(scale, scale_z, size_out) -> None:
    image, target, meta = make_sample(seed=4, n=6)
    zoom = RandomZoom3D(scale=scale, scale_z=scale_z, p=1.0, min_voxels=1)
    out, out_target, out_meta = zoom(image, target, meta)
    expected, expected_masks = reference_zoom(image, target["masks"], size_out)
    torch.testing.assert_close(out, expected)
    kept = [meta["label_ids"].index(i) for i in out_meta["label_ids"]]
    nonempty = [i for i in range(6) if expected_masks[i].any()]
    assert kept == nonempty
    assert torch.equal(out_target["masks"], expected_masks[kept])
    assert out_target["labels"].tolist() == [i + 1 for i in kept]
    assert out_meta["spacing"] == pytest.approx(
        [s * n / m for s, n, m in zip((2.0, 0.5, 0.5), (8, 16, 20), size_out, strict=True)]
    )
    assert_aligned(out, out_target, out_meta)


@pytest.mark.parametrize("mask_dtype", [torch.uint8, torch.bool])
def test_zoom_keeps_masks_binary_and_boxes_on_their_masks(mask_dtype: torch.dtype) -> None:
    zoom = seeded(RandomZoom3D(scale=(0.6, 1.7), scale_z=(0.6, 1.7), random_window=True, p=1.0), 1)
    for seed in range(12):
        image, target, meta = make_sample(seed=seed, mask_dtype=mask_dtype)
        out = zoom(image, target, meta)
        assert out[1]["masks"].dtype == mask_dtype
        assert_aligned(*out, min_voxels=4)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 7), st.integers(1, 9), st.integers(1, 9)),
    factors=st.tuples(st.floats(0.3, 3.0), st.floats(0.3, 3.0)),
    seed=st.integers(0, 2**16),
    min_voxels=st.integers(1, 6),
    random_window=st.booleans(),
)
def test_zoom_property_shape_kept_boxes_exact(shape, factors, seed, min_voxels, random_window) -> None:
    image, target, meta = make_sample(seed=seed, shape=shape, n=3)
    zoom = RandomZoom3D(scale=(factors[0],) * 2, scale_z=(factors[1],) * 2, p=1.0, min_voxels=min_voxels,
                        random_window=random_window)  # fmt: skip
    out = seeded(zoom, seed)(image, target, meta)
    assert out[0].shape == image.shape
    assert_aligned(*out, min_voxels=min_voxels)


def test_zoom_out_drops_a_small_object_with_its_label_box_and_id() -> None:
    masks = torch.zeros((3, 8, 16, 16), dtype=torch.uint8)
    masks[0, 2:6, 4:12, 4:12] = 1  # large: survives
    masks[1, 1:3, 1:3, 1:3] = 1  # 8 voxels -> 1 voxel at half size
    masks[2, 5:7, 12:14, 12:14] = 1  # 8 voxels -> 1 voxel
    image = torch.rand((1, 8, 16, 16))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.tensor([3, 5, 7]), "masks": masks,
              "scores": torch.tensor([0.9, 0.8, 0.7])}  # fmt: skip
    meta = {"spacing": (1.0, 1.0, 1.0), "origin": (0, 0, 0), "label_ids": [100, 200, 300]}
    _, t, m = RandomZoom3D(scale=(0.5, 0.5), p=1.0)(image, target, meta)
    assert t["labels"].tolist() == [3] and m["label_ids"] == [100]
    assert t["scores"].tolist() == pytest.approx([0.9])
    assert t["masks"].shape == (1, 8, 16, 16) and t["boxes"].tolist() == [[3, 6, 6, 5, 10, 10]]
    _, t1, m1 = RandomZoom3D(scale=(0.5, 0.5), p=1.0, min_voxels=1)(image, target, meta)
    assert t1["labels"].tolist() == [3, 5, 7] and m1["label_ids"] == [100, 200, 300]
    assert_aligned(*RandomZoom3D(scale=(0.5, 0.5), p=1.0, min_voxels=1)(image, dict(target), meta))


def test_zoom_in_drops_objects_pushed_out_of_the_window() -> None:
    masks = torch.zeros((2, 4, 16, 16), dtype=torch.uint8)
    masks[0, :, 0:2, 0:2] = 1  # in a corner: outside the centre window at 2x
    masks[1, :, 7:9, 7:9] = 1
    image = torch.rand((1, 4, 16, 16))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.tensor([1, 2]), "masks": masks}
    _, t, m = RandomZoom3D(scale=(2.0, 2.0), scale_z=(1.0, 1.0), p=1.0)(image, target, {"label_ids": [8, 9]})
    assert t["labels"].tolist() == [2] and m["label_ids"] == [9]
    assert t["boxes"].tolist() == [[0, 6, 6, 4, 10, 10]]


def test_zoom_with_an_empty_target() -> None:
    image = torch.rand((2, 6, 10, 12))
    target = {"boxes": torch.zeros((0, 6)), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros((0, 6, 10, 12), dtype=torch.uint8)}  # fmt: skip
    for scale in ((0.5, 0.5), (1.7, 1.7)):
        out, t, m = RandomZoom3D(scale=scale, p=1.0)(image, target, {"label_ids": []})
        assert out.shape == image.shape
        assert t["masks"].shape == (0, 6, 10, 12) and t["boxes"].shape == (0, 6) and t["labels"].shape == (0,)
        assert m["label_ids"] == []


def centre_um(box: torch.Tensor, meta: dict, axis: int) -> float:
    """The position in micrometres of a box's centre along ``axis``."""
    return (meta["origin"][axis] + float(box[axis::3].mean())) * meta["spacing"][axis]


def test_zoom_keeps_physical_positions_in_meta() -> None:
    """``(origin + index) * spacing`` of an object's centre is the same before and after."""
    masks = torch.zeros((1, 10, 20, 20), dtype=torch.uint8)
    masks[0, 4:6, 8:12, 9:13] = 1
    image = torch.rand((1, 10, 20, 20))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.ones(1, dtype=torch.int64), "masks": masks}
    meta = {"spacing": (2.0, 0.5, 0.5), "origin": (3, 40, 50)}
    for scale, scale_z in (((1.5, 1.5), (0.8, 0.8)), ((0.6, 0.6), None)):
        for window in (False, True):
            zoom = seeded(
                RandomZoom3D(scale=scale, scale_z=scale_z, random_window=window, p=1.0, min_voxels=1)
            )
            _, t, m = zoom(image, target, meta)
            for axis in range(3):
                before = centre_um(target["boxes"][0], meta, axis)
                after = centre_um(t["boxes"][0], m, axis)
                assert after == pytest.approx(before, abs=m["spacing"][axis]), (scale, window, axis)


def test_zoom_pads_the_image_with_each_channels_minimum() -> None:
    image = torch.rand((2, 4, 8, 8)) + torch.tensor([100.0, -5.0]).view(2, 1, 1, 1)
    target = {"masks": torch.zeros((0, 4, 8, 8), dtype=torch.uint8)}
    out, _, _ = RandomZoom3D(scale=(0.5, 0.5), p=1.0)(image, target, {})
    for c in range(2):
        assert float(out[c, 0, 0, 0]) == float(image[c].min())
        assert float(out[c, 1:3, 2:6, 2:6].min()) >= float(image[c].min())


def test_zoom_factors_are_log_uniform_and_in_range() -> None:
    image, target, meta = make_sample(shape=(1, 64, 64), n=1)
    zoom = seeded(RandomZoom3D(scale=(0.25, 4.0), scale_z=(1.0, 1.0), p=1.0, min_voxels=1))
    ratios = []
    for _ in range(100):
        _, _, m = zoom(image, target, meta)
        assert m["spacing"][0] == 2.0  # z factor fixed at 1
        assert m["spacing"][1] == m["spacing"][2]  # one factor for y and x
        ratios.append(0.5 / m["spacing"][1])
    ratios = np.array(ratios)
    assert ratios.min() >= 0.25 - 1e-9 and ratios.max() <= 4.0 + 1e-9
    # log-uniform: as many below 1 as above (uniform would give 0.2 below 1)
    assert 0.35 < float(np.mean(ratios < 1.0)) < 0.65


def test_random_window_varies_and_centre_does_not() -> None:
    image, target, meta = make_sample(n=1)
    centred = seeded(RandomZoom3D(scale=(2.0, 2.0), p=1.0, min_voxels=1))
    random = seeded(RandomZoom3D(scale=(2.0, 2.0), p=1.0, min_voxels=1, random_window=True))
    assert len({centred(image, target, meta)[2]["origin"] for _ in range(10)}) == 1
    assert len({random(image, target, meta)[2]["origin"] for _ in range(10)}) > 1


# --------------------------------------------------------------------------- random_blur


def test_gaussian_smooth_matches_scipy() -> None:
    values = torch.rand((5, 7, 30), generator=torch.Generator().manual_seed(0))
    for dim, sigma in ((0, 0.8), (1, 2.6), (2, 1.3), (2, 0.1)):
        expected = ndimage.gaussian_filter1d(
            values.double().numpy(), sigma, axis=dim, mode="nearest", truncate=3.0
        )
        np.testing.assert_allclose(
            gaussian_smooth(values, dim, sigma).numpy(), expected, rtol=1e-5, atol=1e-6
        )


def test_blur_matches_scipy_gaussian_filter() -> None:
    image, target, meta = make_sample()
    out, t, m = RandomBlur(sigma_yx=(1.2, 1.2), sigma_z=(0.7, 0.7), p=1.0)(image, target, meta)
    for c in range(2):
        expected = ndimage.gaussian_filter(
            image[c].double().numpy(), (0.7, 1.2, 1.2), mode="nearest", truncate=3.0
        )
        np.testing.assert_allclose(out[c].numpy(), expected, rtol=1e-5, atol=1e-3)
    assert t["masks"] is target["masks"] and m == meta


def test_blur_impulse_response_has_the_drawn_widths() -> None:
    image = torch.zeros((1, 31, 31, 31), dtype=torch.float64)
    image[0, 15, 15, 15] = 1.0
    target = {"masks": torch.zeros((0, 31, 31, 31), dtype=torch.uint8)}
    blur = seeded(RandomBlur(sigma_yx=(1.0, 3.0), sigma_z=(0.0, 0.0), p=1.0))
    widths = set()
    for _ in range(5):
        out, _, _ = blur(image, target, {})
        assert out.dtype == torch.float64 and float(out.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(out[0, 14].abs().max()) == 0.0 and float(out[0, 16].abs().max()) == 0.0  # sigma_z = 0
        plane = out[0, 15]
        offsets = torch.arange(31, dtype=torch.float64) - 15
        var_y, var_x = float((plane.sum(1) * offsets**2).sum()), float((plane.sum(0) * offsets**2).sum())
        for var in (var_y, var_x):
            assert 0.9**2 < var < 3.0**2  # 3-sigma truncation makes it slightly less than sigma^2
        widths.add((round(var_y, 3), round(var_x, 3)))
        assert var_y != pytest.approx(var_x, abs=1e-3)  # y and x drawn independently
    assert len(widths) == 5  # and again at every call


def test_blur_keeps_a_constant_image() -> None:
    image = torch.full((2, 5, 9, 9), 7.0)
    blur = RandomBlur(sigma_yx=(2.0, 3.0), sigma_z=(1.0, 4.0), p=1.0)
    out, _, _ = blur(image, {"masks": torch.zeros((0, 5, 9, 9))}, {})
    torch.testing.assert_close(out, image)


# --------------------------------------------------------------------------- random_stripes


def stripe_gain(direction: str, seed: int = 0, shape: tuple = (5, 24, 32), **kwargs) -> torch.Tensor:
    """The gain field: the stripes applied to an image of ones (2 channels)."""
    stripes = seeded(RandomStripes(direction=direction, p=1.0, **kwargs), seed)
    out, _, _ = stripes(torch.ones((2, *shape)), {"masks": torch.zeros((0, *shape))}, {})
    return out


@pytest.mark.parametrize(("direction", "across"), [("x", 2), ("y", 3)])
def test_stripes_run_along_the_direction_and_repeat_over_z_and_channels(direction: str, across: int) -> None:
    gain = stripe_gain(direction, strength=(0.3, 0.3))
    along = 5 - across  # the other in-plane dim
    assert torch.equal(gain, gain.narrow(along, 0, 1).expand_as(gain))  # constant along the sheet
    assert torch.equal(gain, gain[:1, :1].expand_as(gain))  # same in every z plane and channel
    assert float(gain.max()) <= 1.0 and float(gain.min()) == pytest.approx(0.7, abs=1e-6)
    assert gain.narrow(along, 0, 1).unique().numel() > 10  # one gain per line across it


def test_stripes_random_direction_picks_both_and_smoothness_smooths() -> None:
    kinds = set()
    for seed in range(10):
        gain = stripe_gain("random", seed=seed)
        kinds.add("x" if torch.equal(gain, gain[..., :1].expand_as(gain)) else "y")
    assert kinds == {"x", "y"}
    rough = stripe_gain("x", smoothness=0.0, strength=(0.5, 0.5))[0, 0, :, 0]
    smooth = stripe_gain("x", smoothness=4.0, strength=(0.5, 0.5))[0, 0, :, 0]
    assert float(smooth.diff().abs().mean()) < 0.5 * float(rough.diff().abs().mean())


def test_stripes_multiply_the_image() -> None:
    image, target, meta = make_sample()
    out, t, m = seeded(RandomStripes(direction="y", p=1.0), 2)(image, target, meta)
    torch.testing.assert_close(out, image * stripe_gain("y", seed=2, shape=tuple(image.shape[1:])))
    assert t["masks"] is target["masks"] and m == meta


# --------------------------------------------------------------------------- random_intensity_scale


def fit_line(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    a, b = np.polyfit(x.flatten().double().numpy(), y.flatten().double().numpy(), 1)
    return float(a), float(b)


def test_intensity_scale_is_affine_with_factors_in_range() -> None:
    image, target, meta = make_sample()
    shared = seeded(RandomIntensityScale(scale=(0.5, 2.0), offset=(-3.0, 3.0), p=1.0))
    per_channel = seeded(RandomIntensityScale(scale=(0.5, 2.0), offset=(-3.0, 3.0), p=1.0, per_channel=True))
    for transform, same in ((shared, True), (per_channel, False)):
        out, t, m = transform(image, target, meta)
        lines = [fit_line(image[c], out[c]) for c in range(2)]
        for scale, offset in lines:
            assert 0.5 <= scale <= 2.0 and -3.0 <= offset <= 3.0
        assert (lines[0] == pytest.approx(lines[1], rel=1e-4)) is same
        assert t["masks"] is target["masks"] and m == meta


def test_intensity_scale_fixed_range_is_exact() -> None:
    image, target, meta = make_sample()
    out, _, _ = RandomIntensityScale(scale=(2.0, 2.0), offset=(0.5, 0.5), p=1.0)(image, target, meta)
    torch.testing.assert_close(out, image * 2.0 + 0.5)
    half = image.to(torch.float64)
    out64, _, _ = RandomIntensityScale(scale=(0.5, 0.5), offset=(-1.0, -1.0), p=1.0)(half, target, meta)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, half * 0.5 - 1.0)
