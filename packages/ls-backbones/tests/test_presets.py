"""Every backbone ls-backbones registers builds by name and honours the contract it declares."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch

from ls_backbones import create_backbone

BUILTIN = sorted(
    ep.name
    for ep in entry_points(group="ls.backbones")
    if ep.dist and ep.dist.metadata["Name"] == "ls-backbones"
)
# registered builders that need arguments to say what they wrap
KWARGS = {"fpn3d": {"body": "resnet3d_18", "body_kwargs": {"in_channels": 1}}}


def test_builtin_entry_points_cover_each_family_and_size() -> None:
    expected = {"resnet3d_18", "resnet3d_50", "resnet3d_50_fpn", "vitdet3d_s", "vitdet3d_b",
                "vitdet3d_b_sfp", "hiera3d_t", "hiera3d_s", "hiera3d_b", "hiera3d_b_fpn"}  # fmt: skip
    assert expected <= set(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.slow(seconds=7)
def test_preset_builds_and_matches_its_declarations(name: str, check_contract) -> None:
    torch.manual_seed(0)
    net = create_backbone(name, **KWARGS.get(name, {})).eval()
    div = net.size_divisibility
    # the smallest valid input, and an anisotropic one (twice as long in y)
    check_contract(net, (1, net.in_channels, *div))
    check_contract(net, (1, net.in_channels, div[0], 2 * div[1], div[2]))


@pytest.mark.parametrize("name", ["resnet3d_18", "vitdet3d_s_sfp", "hiera3d_t_fpn"])
def test_preset_rejects_an_input_that_breaks_its_divisibility(name: str) -> None:
    net = create_backbone(name).eval()
    d, h, w = net.size_divisibility
    with pytest.raises(ValueError, match=r"not divisible by size_divisibility"):
        net(torch.randn(1, 1, d, h + h // 2, w))
