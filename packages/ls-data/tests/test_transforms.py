"""Joint transforms: box/mask consistency, invertibility, crops, dropping, statistics, rescale."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import numpy as np
import pytest
import torch

from ls_core import signature_keywords
from ls_data.errors import DataError
from ls_data.registry import RegistryError, create_transform, get_transform, list_transforms
from ls_data.transforms import (
    Compose,
    GaussianNoise,
    NormalizeIntensity,
    RandomCrop3D,
    RandomFlip,
    RandomGamma,
    RandomRot90YX,
    RescaleToSpacing,
    boxes_from_masks,
    build_transforms,
    drop_empty_instances,
)
from ls_data.transforms.intensity import percentile


def make_sample(
    seed: int = 0, shape: tuple[int, int, int] = (6, 10, 12), channels: int = 2, n: int = 4
) -> tuple[torch.Tensor, dict, dict]:
    """A sample with ``n`` irregular instances (random voxels inside random boxes)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((channels, *shape), generator=g) * 100.0
    masks = torch.zeros((n, *shape), dtype=torch.uint8)
    for i in range(n):
        lo = [int(torch.randint(0, s - 1, (), generator=g)) for s in shape]
        hi = [int(torch.randint(a + 1, s + 1, (), generator=g)) for a, s in zip(lo, shape, strict=True)]
        region = masks[i, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        region.copy_((torch.rand(region.shape, generator=g) < 0.7).to(torch.uint8))
        region[0, 0, 0] = 1  # never empty
    target = {
        "boxes": boxes_from_masks(masks),
        "labels": torch.arange(1, n + 1, dtype=torch.int64),
        "masks": masks,
    }
    meta = {"spacing": (2.0, 0.5, 0.5), "origin": (10, 20, 30), "label_ids": [11 * (i + 1) for i in range(n)]}
    return image, target, meta


def assert_consistent(image: torch.Tensor, target: dict, meta: dict) -> None:
    masks = target["masks"]
    n = masks.shape[0]
    assert image.ndim == 4 and tuple(masks.shape[1:]) == tuple(image.shape[1:])
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 6)
    torch.testing.assert_close(target["boxes"], boxes_from_masks(masks), rtol=0, atol=0)
    assert target["labels"].shape == (n,) and len(meta["label_ids"]) == n
    assert bool(masks.flatten(1).any(dim=1).all()), "an empty instance was kept"


# --------------------------------------------------------------------------- boxes_from_masks


def test_boxes_from_masks_spans_voxels_half_open() -> None:
    masks = torch.zeros((3, 4, 5, 6), dtype=torch.uint8)
    masks[0, 1:3, 2:5, 0:1] = 1
    masks[1, 3, 4, 5] = 1
    boxes = boxes_from_masks(masks)
    assert boxes.dtype == torch.float32
    assert boxes[0].tolist() == [1, 2, 0, 3, 5, 1]
    assert boxes[1].tolist() == [3, 4, 5, 4, 5, 6]
    assert boxes[2].tolist() == [0] * 6  # empty mask
    assert boxes_from_masks(torch.zeros((0, 2, 2, 2), dtype=torch.bool)).shape == (0, 6)
    with pytest.raises(DataError, match=r"\(N, Z, Y, X\)"):
        boxes_from_masks(torch.zeros((2, 2, 2)))


def test_boxes_from_masks_matches_numpy_reference() -> None:
    _, target, _ = make_sample(seed=3, n=6)
    for mask, box in zip(target["masks"].numpy(), target["boxes"].tolist(), strict=True):
        idx = np.nonzero(mask)
        expected = [int(i.min()) for i in idx] + [int(i.max()) + 1 for i in idx]
        assert box == expected


def test_drop_empty_instances_keeps_every_per_instance_entry_aligned() -> None:
    _, target, meta = make_sample(n=4)
    target = dict(target, masks=target["masks"].clone(), scores=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    target["masks"][1] = 0
    new_target, new_meta = drop_empty_instances(target, meta)
    assert new_target["labels"].tolist() == [1, 3, 4]
    assert new_target["scores"].tolist() == pytest.approx([0.1, 0.3, 0.4])
    assert new_meta["label_ids"] == [11, 33, 44]
    assert new_target["masks"].shape[0] == 3 and new_target["boxes"].shape[0] == 3
    assert meta["label_ids"] == [11, 22, 33, 44]  # input untouched


# --------------------------------------------------------------------------- consistency of all


ALL_TRANSFORMS = {
    "crop": lambda: RandomCrop3D(size=(4, 6, 7)),
    "crop_fg": lambda: RandomCrop3D(size=(3, 5, 5), prefer_foreground=1.0, min_instances=2),
    "flip": lambda: RandomFlip(p=1.0),
    "flip_yx": lambda: RandomFlip(axes=("y", "x"), p=0.5),
    "rot90": lambda: RandomRot90YX(p=1.0),
    "normalize": lambda: NormalizeIntensity(),
    "gamma": lambda: RandomGamma(p=1.0),
    "noise": lambda: GaussianNoise(std=0.1, p=1.0),
    "rescale_down": lambda: RescaleToSpacing(target_spacing=(2.0, 1.0, 1.0)),
    "rescale_up": lambda: RescaleToSpacing(target_spacing=1.0),
}


@pytest.mark.parametrize("name", list(ALL_TRANSFORMS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_transform_keeps_boxes_masks_and_image_aligned(name: str, seed: int) -> None:
    check_keeps_sample_aligned(ALL_TRANSFORMS[name](), seed)


# the arguments a registered transform cannot do without (every other one is built with defaults)
REQUIRED_ARGUMENTS = {
    "random_crop": {"size": (4, 6, 7)},
    "rescale_to_spacing": {"target_spacing": (2.0, 1.0, 1.0)},
}


@pytest.mark.parametrize("name", list_transforms())
@pytest.mark.parametrize("seed", [0, 1])
def test_every_registered_transform_keeps_boxes_masks_and_image_aligned(name: str, seed: int) -> None:
    kwargs = dict(REQUIRED_ARGUMENTS.get(name, {}))
    if "p" in signature_keywords(get_transform(name)).accepted:
        kwargs["p"] = 1.0  # always applied
    check_keeps_sample_aligned(create_transform(name, **kwargs), seed)


def check_keeps_sample_aligned(transform: object, seed: int) -> None:
    image, target, meta = make_sample(seed=seed)
    transform.generator = torch.Generator().manual_seed(seed) if hasattr(transform, "generator") else None
    before = {k: v.clone() for k, v in target.items()}, dict(meta)
    out = transform(image, target, meta)
    assert_consistent(*out)
    assert out[0].dtype == image.dtype
    for key, value in before[0].items():  # the caller's dicts are not modified
        assert torch.equal(target[key], value)
    assert meta == before[1]


def test_sample_checks_name_the_tensor() -> None:
    image, target, meta = make_sample()
    bad = dict(target, masks=target["masks"][:, :-1])
    with pytest.raises(DataError, match=r"RandomFlip: target\['masks'\].*\(6, 10, 12\)"):
        RandomFlip(p=1.0)(image, bad, meta)
    with pytest.raises(DataError, match=r"image must be a \(C, Z, Y, X\)"):
        RandomFlip(p=1.0)(image[0], target, meta)
    with pytest.raises(DataError, match=r"target\['boxes'\] must be \(4, 6\)"):
        RandomFlip(p=1.0)(image, dict(target, boxes=target["boxes"][:2]), meta)
    with pytest.raises(DataError, match="floating-point"):
        NormalizeIntensity()(image.to(torch.int32), target, meta)


# --------------------------------------------------------------------------- spatial


def test_flip_twice_is_identity_and_boxes_mirror() -> None:
    image, target, meta = make_sample()
    flip = RandomFlip(axes=("z", "x"), p=1.0)
    once = flip(image, target, meta)
    assert torch.equal(once[0], image.flip([1, 3]))
    z, _, x = image.shape[1:]
    b = target["boxes"]
    expected = torch.stack([z - b[:, 3], b[:, 1], x - b[:, 5], z - b[:, 0], b[:, 4], x - b[:, 2]], dim=1)
    torch.testing.assert_close(once[1]["boxes"], expected, rtol=0, atol=0)
    twice = flip(*once)
    assert torch.equal(twice[0], image)
    assert torch.equal(twice[1]["masks"], target["masks"])
    assert torch.equal(twice[1]["boxes"], target["boxes"])
    assert twice[2] == meta


def test_flip_p0_changes_nothing_and_axes_are_checked() -> None:
    image, target, meta = make_sample()
    out = RandomFlip(p=0.0)(image, target, meta)
    assert torch.equal(out[0], image) and torch.equal(out[1]["masks"], target["masks"])
    with pytest.raises(DataError, match="subset of"):
        RandomFlip(axes=("z", "w"))
    with pytest.raises(DataError, match="probability"):
        RandomFlip(p=1.5)


def test_rot90_four_quarter_turns_are_identity_and_swap_yx() -> None:
    image, target, meta = make_sample(shape=(3, 5, 8))
    rot = RandomRot90YX(p=1.0, k=1)
    out = rot(image, target, meta)
    assert out[0].shape == (2, 3, 8, 5) and out[1]["masks"].shape[1:] == (3, 8, 5)
    assert out[2]["spacing"] == (2.0, 0.5, 0.5)
    assert torch.equal(out[0], torch.rot90(image, 1, dims=(2, 3)))
    sample = (image, target, meta)
    for _ in range(4):
        sample = rot(*sample)
        assert_consistent(*sample)
    assert torch.equal(sample[0], image)
    assert torch.equal(sample[1]["masks"], target["masks"])
    assert torch.equal(sample[1]["boxes"], target["boxes"])
    half = RandomRot90YX(p=1.0, k=2)
    assert torch.equal(half(*half(image, target, meta))[0], image)


def test_rot90_moves_a_single_voxel_box_as_expected() -> None:
    masks = torch.zeros((1, 2, 4, 6), dtype=torch.uint8)
    masks[0, 1, 1, 4] = 1  # (z, y, x) = (1, 1, 4)
    image = torch.zeros((1, 2, 4, 6))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.ones(1, dtype=torch.int64), "masks": masks}
    meta = {"spacing": (3.0, 1.0, 2.0), "origin": (0, 0, 0)}
    _, new_target, new_meta = RandomRot90YX(p=1.0, k=1)(image, target, meta)
    # torch.rot90 with k=1 on (y, x) maps (y, x) -> (X - 1 - x, y)
    assert new_target["boxes"][0].tolist() == [1, 1, 1, 2, 2, 2]
    assert new_meta["spacing"] == (3.0, 2.0, 1.0)
    with pytest.raises(DataError, match="k must be"):
        RandomRot90YX(k=4)


def test_crop_updates_origin_and_cuts_image_and_masks_alike() -> None:
    image, target, meta = make_sample(seed=5)
    crop = RandomCrop3D(size=(4, 6, 7))
    crop.generator = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(8):
        out_image, out_target, out_meta = crop(image, target, meta)
        off = [o - m for o, m in zip(out_meta["origin"], meta["origin"], strict=True)]
        offsets.add(tuple(off))
        window = (slice(off[0], off[0] + 4), slice(off[1], off[1] + 6), slice(off[2], off[2] + 7))
        assert torch.equal(out_image, image[(slice(None), *window)])
        # every kept instance is the original one, identified by its label id
        for j, label_id in enumerate(out_meta["label_ids"]):
            index = meta["label_ids"].index(label_id)
            assert torch.equal(out_target["masks"][j], target["masks"][index][window])
            assert int(out_target["labels"][j]) == index + 1
    assert len(offsets) > 1, "the crop origin never changed"


def test_crop_drops_instances_left_outside() -> None:
    masks = torch.zeros((2, 2, 2, 8), dtype=torch.uint8)
    masks[0, :, :, 0:2] = 1  # left
    masks[1, :, :, 6:8] = 1  # right
    image = torch.rand((1, 2, 2, 8))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.tensor([5, 7]), "masks": masks}
    meta = {"spacing": (1.0, 1.0, 1.0), "origin": (0, 0, 0), "label_ids": [100, 200]}
    crop = RandomCrop3D(size=(2, 2, 4))
    crop.generator = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(20):
        _, t, m = crop(image, target, meta)
        start = m["origin"][2]
        expected_ids = [100] * (start <= 1) + [200] * (start >= 3)
        assert m["label_ids"] == expected_ids
        assert t["labels"].tolist() == [{100: 5, 200: 7}[i] for i in expected_ids]
        assert_consistent(image[..., start : start + 4], t, m)
        seen.add(len(expected_ids))
    assert 0 in seen and 1 in seen


def test_crop_prefer_foreground_always_hits_an_instance() -> None:
    masks = torch.zeros((1, 8, 16, 16), dtype=torch.uint8)
    masks[0, 6, 13, 2] = 1
    image = torch.rand((1, 8, 16, 16))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.ones(1, dtype=torch.int64), "masks": masks}
    crop = RandomCrop3D(size=(2, 3, 3), prefer_foreground=1.0)
    crop.generator = torch.Generator().manual_seed(0)
    origins = set()
    for _ in range(10):
        _, t, m = crop(image, target, {"origin": (0, 0, 0)})
        assert t["masks"].shape[0] == 1
        origins.add(m["origin"])
    assert len(origins) > 1  # still random around the instance


def test_crop_min_instances_prefers_windows_with_more_instances() -> None:
    masks = torch.zeros((2, 1, 1, 12), dtype=torch.uint8)
    masks[0, 0, 0, 0] = 1
    masks[1, 0, 0, 2] = 1
    image = torch.rand((1, 1, 1, 12))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.tensor([1, 1]), "masks": masks}
    crop = RandomCrop3D(size=(1, 1, 3), min_instances=2, max_tries=200)
    crop.generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        _, t, m = crop(image, target, {"origin": (0, 0, 0)})
        assert m["origin"] == (0, 0, 0) and t["masks"].shape[0] == 2  # the only window with both


def test_crop_too_large_names_shapes() -> None:
    image, target, meta = make_sample()
    with pytest.raises(DataError, match=r"crop size \(7, 4, 4\).*\(6, 10, 12\)"):
        RandomCrop3D(size=(7, 4, 4))(image, target, meta)
    with pytest.raises(DataError, match="size"):
        RandomCrop3D(size=(1, 2))


# --------------------------------------------------------------------------- intensity


def test_percentile_matches_numpy() -> None:
    values = torch.randn((3, 1001), generator=torch.Generator().manual_seed(0))
    for q in (0.0, 1.0, 37.3, 50.0, 99.8, 100.0):
        expected = np.percentile(values.numpy().astype(np.float64), q, axis=1)
        np.testing.assert_allclose(percentile(values, q).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_normalize_percentile_maps_percentiles_to_0_and_1() -> None:
    image, target, meta = make_sample()
    image[1] = image[1] * 7 + 300
    out, _, _ = NormalizeIntensity(mode="percentile", low=2.0, high=98.0)(image, target, meta)
    for c in range(2):
        values = out[c].flatten().double().numpy()
        assert np.percentile(values, 2.0) == pytest.approx(0.0, abs=1e-5)
        assert np.percentile(values, 98.0) == pytest.approx(1.0, abs=1e-5)
    clipped, _, _ = NormalizeIntensity(low=2.0, high=98.0, clip=True)(image, target, meta)
    assert float(clipped.min()) == pytest.approx(0.0, abs=1e-6)
    assert float(clipped.max()) == pytest.approx(1.0, abs=1e-6)


def test_normalize_meanstd_per_channel_and_global() -> None:
    image, target, meta = make_sample()
    image[0] = image[0] * 3 - 50
    out, _, _ = NormalizeIntensity(mode="meanstd")(image, target, meta)
    for c in range(2):
        assert float(out[c].mean()) == pytest.approx(0.0, abs=1e-4)
        assert float(out[c].std(correction=0)) == pytest.approx(1.0, abs=1e-4)
    glob, _, _ = NormalizeIntensity(mode="meanstd", per_channel=False)(image, target, meta)
    assert float(glob.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(glob[0].mean()) != pytest.approx(0.0, abs=1e-2)


def test_normalize_constant_channel_becomes_zero_and_bad_args_fail() -> None:
    image, target, meta = make_sample()
    image[0] = 5.0
    for mode in ("percentile", "meanstd"):
        out, _, _ = NormalizeIntensity(mode=mode)(image, target, meta)
        assert torch.equal(out[0], torch.zeros_like(out[0]))
        assert torch.isfinite(out).all()
    with pytest.raises(DataError, match="mode"):
        NormalizeIntensity(mode="minmax")
    with pytest.raises(DataError, match="low < high"):
        NormalizeIntensity(low=50.0, high=10.0)


def test_gamma_keeps_range_and_order() -> None:
    image, target, meta = make_sample()
    gamma = RandomGamma(gamma_range=(1.5, 2.0), p=1.0, per_channel=True)
    gamma.generator = torch.Generator().manual_seed(0)
    out, _, _ = gamma(image, target, meta)
    for c in range(2):
        torch.testing.assert_close(out[c].min(), image[c].min())
        torch.testing.assert_close(out[c].max(), image[c].max(), rtol=1e-5, atol=1e-4)
        order = torch.argsort(image[c].flatten())
        assert bool((out[c].flatten()[order].diff() >= -1e-4).all())
    assert not torch.allclose(out, image)
    identity, _, _ = RandomGamma(gamma_range=(1.0, 1.0), p=1.0)(image, target, meta)
    torch.testing.assert_close(identity, image, rtol=1e-5, atol=1e-4)
    with pytest.raises(DataError, match="gamma_range"):
        RandomGamma(gamma_range=(0.0, 1.0))


def test_gaussian_noise_std_absolute_and_relative() -> None:
    image = torch.zeros((2, 8, 32, 32))
    image[1] = torch.randn((8, 32, 32), generator=torch.Generator().manual_seed(1)) * 10
    target = {"boxes": torch.zeros((0, 6)), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros((0, 8, 32, 32), dtype=torch.uint8)}  # fmt: skip
    noise = GaussianNoise(std=0.5, p=1.0)
    noise.generator = torch.Generator().manual_seed(0)
    out, t, _ = noise(image, target, {})
    assert float((out - image)[0].std()) == pytest.approx(0.5, rel=0.05)
    assert t["masks"].shape == (0, 8, 32, 32)
    relative = GaussianNoise(std=0.1, p=1.0, relative=True)
    out, _, _ = relative(image, target, {})
    assert float((out - image)[0].abs().max()) == 0.0  # a constant channel has std 0
    assert float((out - image)[1].std()) == pytest.approx(0.1 * float(image[1].std()), rel=0.05)
    assert torch.equal(GaussianNoise(std=1.0, p=0.0)(image, target, {})[0], image)


# --------------------------------------------------------------------------- rescale


def test_rescale_shapes_spacing_and_origin() -> None:
    image, target, meta = make_sample(shape=(6, 10, 12))
    out_image, out_target, out_meta = RescaleToSpacing(target_spacing=(1.0, 1.0, 1.0))(image, target, meta)
    assert out_image.shape == (2, 12, 5, 6)
    assert out_meta["spacing"] == (1.0, 1.0, 1.0)
    for o_new, s_new, o_old, s_old in zip(out_meta["origin"], out_meta["spacing"], meta["origin"],
                                          meta["spacing"], strict=True):  # fmt: skip
        assert o_new * s_new == pytest.approx(o_old * s_old)
    assert_consistent(out_image, out_target, out_meta)
    const = torch.full((1, 6, 10, 12), 3.0)
    resized, _, _ = RescaleToSpacing(target_spacing=(1.0, 1.0, 1.0))(const, target, meta)
    torch.testing.assert_close(resized, torch.full((1, 12, 5, 6), 3.0))
    # sizes that do not divide: spacing is the exact new voxel size
    _, _, m = RescaleToSpacing(target_spacing=(3.0, 0.7, 0.5))(image, target, meta)
    assert m["spacing"] == pytest.approx((2.0 * 6 / 4, 0.5 * 10 / 7, 0.5))
    # halves go up (ls_core.resampled_size): 5 * 2 / 4 = 2.5 -> 3 (Python's round gave 2), and the
    # float product 10 * 0.5 / 0.2 = 25 exactly
    image, target, meta = make_sample(shape=(5, 10, 12))
    out, _, m = RescaleToSpacing(target_spacing=(4.0, 0.2, 0.5))(image, target, meta)
    assert out.shape == (2, 3, 25, 12) and m["spacing"] == pytest.approx((2.0 * 5 / 3, 0.2, 0.5))


def test_rescale_drops_instances_that_vanish_and_needs_spacing() -> None:
    masks = torch.zeros((2, 2, 4, 4), dtype=torch.uint8)
    masks[0, :, 0, 0] = 1  # even (y, x): not sampled when halving y and x
    masks[1, :, 1:3, 1:3] = 1
    image = torch.rand((1, 2, 4, 4))
    target = {"boxes": boxes_from_masks(masks), "labels": torch.tensor([1, 2]), "masks": masks}
    meta = {"spacing": (1.0, 1.0, 1.0), "origin": (0, 0, 0), "label_ids": [3, 4]}
    out_image, t, m = RescaleToSpacing(target_spacing=(1.0, 2.0, 2.0))(image, target, meta)
    assert out_image.shape == (1, 2, 2, 2)
    assert t["labels"].tolist() == [2] and m["label_ids"] == [4]
    assert t["boxes"].tolist() == [[0, 0, 0, 2, 1, 1]]
    with pytest.raises(DataError, match="spacing"):
        RescaleToSpacing(target_spacing=1.0)(image, target, {"origin": (0, 0, 0)})


# --------------------------------------------------------------------------- determinism


def random_pipeline() -> Compose:
    return build_transforms([
        {"name": "random_crop", "size": [4, 8, 8]},
        {"name": "random_flip", "p": 0.5},
        {"name": "random_rot90_yx", "p": 0.5},
        {"name": "random_gamma", "p": 0.5},
        {"name": "gaussian_noise", "std": 0.1, "p": 0.5},
    ])  # fmt: skip


def run_pipeline(pipeline: Compose, seeds: list[int]) -> list[tuple]:
    return [pipeline(*make_sample(seed=s)) for s in seeds]


def assert_same(a: list[tuple], b: list[tuple]) -> None:
    for (ia, ta, ma), (ib, tb, mb) in zip(a, b, strict=True):
        assert torch.equal(ia, ib) and torch.equal(ta["masks"], tb["masks"]) and ma == mb


def test_seeded_generator_makes_the_pipeline_deterministic() -> None:
    runs = []
    for seed in (7, 7, 8):
        pipeline = random_pipeline()
        pipeline.set_generator(torch.Generator().manual_seed(seed))
        runs.append(run_pipeline(pipeline, [0, 1, 2, 3]))
    assert_same(runs[0], runs[1])
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(runs[0], runs[2], strict=True))


def test_global_rng_is_used_without_a_generator() -> None:
    pipeline = random_pipeline()
    torch.manual_seed(123)
    first = run_pipeline(pipeline, [0, 1])
    torch.manual_seed(123)
    assert_same(first, run_pipeline(pipeline, [0, 1]))


def test_pipeline_with_generator_survives_pickling() -> None:
    pipeline = random_pipeline()
    pipeline.set_generator(torch.Generator().manual_seed(4))
    copy = pickle.loads(pickle.dumps(pipeline))  # as sent to spawned DataLoader workers
    assert_same(run_pipeline(pipeline, [0, 1]), run_pipeline(copy, [0, 1]))


def test_reseed_changes_set_generators() -> None:
    pipeline = random_pipeline()
    pipeline.set_generator(torch.Generator())
    pipeline.reseed(1)
    a = run_pipeline(pipeline, [0])
    pipeline.reseed(1)
    assert_same(a, run_pipeline(pipeline, [0]))
    pipeline.reseed(2)
    assert not torch.equal(a[0][0], run_pipeline(pipeline, [0])[0][0])


# --------------------------------------------------------------------------- build_transforms


class ReadOnlyMapping(Mapping):
    """A Mapping that is not a dict (as OmegaConf's DictConfig)."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getitem__(self, key: str):
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_build_transforms_by_name_target_and_mapping_types() -> None:
    pipeline = build_transforms([
        {"name": "random_flip", "axes": ["y", "x"], "p": 1.0},
        ReadOnlyMapping({"_target_": "ls_data.transforms.intensity.NormalizeIntensity", "mode": "meanstd"}),
        MappingProxyType({"_target_": "ls_data.transforms.spatial:RandomCrop3D", "size": (2, 3, 4)}),
        RandomRot90YX(p=0.0),
    ])  # fmt: skip
    names = [type(t).__name__ for t in pipeline]
    assert names == ["RandomFlip", "NormalizeIntensity", "RandomCrop3D", "RandomRot90YX"]
    assert pipeline[0].axes == ("y", "x") and pipeline[2].size == (2, 3, 4)
    assert "RandomFlip(axes=('y', 'x'), p=1.0)" in repr(pipeline)
    image, target, meta = make_sample()
    assert_consistent(*pipeline(image, target, meta))
    assert len(build_transforms(None)) == 0 and len(build_transforms([])) == 0


def test_build_transforms_unknown_name_lists_known_and_suggests() -> None:
    with pytest.raises(RegistryError) as info:
        build_transforms([{"name": "random_flip"}, {"name": "random_flp"}])
    message = str(info.value)
    assert "transforms_list[1]" in message and "Did you mean 'random_flip'" in message
    assert "normalize_intensity" in message and "rescale_to_spacing" in message


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        ([{"name": "random_flip", "axis": "z"}],
         r"transforms_list\[0\] \('random_flip'\): unknown key 'axis'; accepted keys: axes, p"),
        ([{"name": "random_flip"}, {"name": "random_crop"}],
         r"transforms_list\[1\].*missing required key 'size'"),
        ([{"name": "normalize_intensity", "mode": "zscore"}], r"transforms_list\[0\].*mode must be"),
        ([{"name": "random_flip", "_target_": "x.Y"}], r"transforms_list\[0\] must have exactly one of"),
        ([{"p": 0.5}], r"transforms_list\[0\] must have exactly one of"),
        ([{"name": "random_flip", "_partial_": True}], r"Hydra keys \['_partial_'\]"),
        ([3], r"transforms_list\[0\] must be a mapping"),
        ({"name": "random_flip"}, r"must be a list of transform configs"),
    ],
)  # fmt: skip
def test_build_transforms_errors_name_entry_and_key(entries, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        build_transforms(entries)


def test_build_transforms_bad_target_paths() -> None:
    with pytest.raises(RegistryError, match=r"transforms_list\[0\].*no attribute 'Nope'"):
        build_transforms([{"_target_": "ls_data.transforms.spatial.Nope"}])
    with pytest.raises(RegistryError, match="no importable module"):
        build_transforms([{"_target_": "no_such_package_xyz.Thing"}])


def test_transforms_keep_the_sample_on_its_device() -> None:
    """No CPU tensor is mixed into a sample on another device (the meta device stands in for
    CUDA here: an op mixing it with a CPU tensor raises, as on a GPU)."""
    image = torch.rand(2, 6, 8, 10, device="meta")
    target = {"masks": torch.zeros(1, 6, 8, 10, dtype=torch.uint8, device="meta"),
              "boxes": torch.zeros(1, 6, device="meta"),
              "labels": torch.ones(1, dtype=torch.int64, device="meta")}
    for transform in (NormalizeIntensity(), RandomGamma(p=1.0), RandomGamma(p=1.0, per_channel=True),
                      GaussianNoise(p=1.0), RandomFlip(p=1.0), RandomRot90YX(p=1.0)):
        out, out_target, _ = transform(image, target, {"spacing": (2.0, 0.5, 0.5)})
        assert out.device.type == "meta" and out.shape[0] == 2, transform
        assert out_target["masks"].device.type == "meta", transform
