"""``models.channels_last``: the model in the channels-last 3-D layout computes what the default
layout (the reference) computes: detections, masks, losses and gradients within float tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ls_data.transforms import boxes_from_masks
from ls_train.config import ConfigError, load_config
from ls_train.factory import build_model


def _models(tmp_path: Path, tiny_model: list[str]) -> tuple[torch.nn.Module, torch.nn.Module]:
    built = []
    for flag in ("false", "true"):
        overrides = [f"data.root={tmp_path}", *tiny_model, f"models.channels_last={flag}"]
        cfg = load_config("quickstart", overrides)
        torch.manual_seed(0)
        built.append(build_model(cfg))
    return built[0], built[1]


def _volume() -> torch.Tensor:
    """``(1, 8, 32, 32)``: three bright boxes in noise (detections with the untrained model)."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 8, 32, 32, generator=g) * 0.2
    for z, y, x in ((2, 4, 4), (3, 18, 6), (1, 10, 20)):
        image[:, z : z + 4, y : y + 8, x : x + 8] += 1.0
    return image


def test_the_weights_are_channels_last_and_equal_to_the_reference(tmp_path: Path, tiny_model) -> None:
    reference, fast = _models(tmp_path, tiny_model)
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in convs)
    assert not all(w.is_contiguous() for w in convs)
    for (name, a), (_, b) in zip(reference.state_dict().items(), fast.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.slow(seconds=7)
def test_inference_gives_the_reference_detections(tmp_path: Path, tiny_model) -> None:
    reference, fast = _models(tmp_path, tiny_model)
    with torch.no_grad():
        a = reference.eval()([_volume()])[0]
        b = fast.eval()([_volume()])[0]
    assert len(a["boxes"]) > 0 and len(a["boxes"]) == len(b["boxes"])
    torch.testing.assert_close(b["boxes"], a["boxes"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b["scores"], a["scores"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b["masks"], a["masks"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow(seconds=19)
def test_a_training_step_gives_the_reference_losses_and_gradients(tmp_path: Path, tiny_model) -> None:
    reference, fast = _models(tmp_path, tiny_model)
    ids = torch.zeros(8, 32, 32, dtype=torch.long)
    ids[2:6, 4:12, 4:12], ids[3:7, 18:26, 6:14] = 1, 2
    masks = torch.stack([ids == 1, ids == 2])
    classes = torch.ones(2, dtype=torch.long)
    target = {"boxes": boxes_from_masks(masks), "labels": classes, "masks": masks.to(torch.uint8)}
    results = []
    for model in (reference, fast):
        torch.manual_seed(3)  # the same RPN and RoI samples
        losses = model.train()([_volume()], [dict(target)])
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((losses, grads))
    (la, ga), (lb, gb) = results
    for key in la:
        torch.testing.assert_close(lb[key], la[key], atol=1e-5, rtol=1e-4)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], atol=1e-5, rtol=1e-3, msg=name)


def test_channels_last_must_be_a_bool(tmp_path: Path, tiny_model) -> None:
    cfg = load_config("quickstart", [f"data.root={tmp_path}", *tiny_model])
    cfg["models"]["channels_last"] = "yes"
    with pytest.raises(ConfigError, match=r"models\.channels_last must be true or false, got 'yes'"):
        build_model(cfg)
