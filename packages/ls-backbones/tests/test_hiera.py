"""Hiera3D: parity with the official Hiera (PyPI hiera-transformer), the backbone contract,
the token layout, position-embedding interpolation, presets, and the errors it gives."""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import ls_backbones
from ls_backbones.hiera import Hiera3D, hiera3d_b, hiera3d_s, hiera3d_t
from ls_backbones.hiera_utils import mask_unit_levels, reroll, unroll


def import_official() -> ModuleType:
    """The official implementation, the numerical reference; a missing one fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hiera imports timm.models.layers (deprecated)
            import hiera
    except ImportError as exc:
        pytest.fail(
            f"the reference implementation 'hiera' (PyPI hiera-transformer==0.1.4) cannot be imported "
            f"({exc}); install the test extra: pip install -e 'packages/ls-backbones[test]'"
        )
    return hiera


# Tiny configurations (keyword arguments of Hiera3D).
ISO = dict(input_size=(32, 32, 32), embed_dim=8, num_heads=1, stages=(1, 1, 1, 1), q_pool=2, q_stride=2,
           mask_unit_size=4, patch_kernel=7, patch_stride=4, patch_padding=3)
ANISO = dict(input_size=(8, 64, 64), in_channels=2, embed_dim=8, num_heads=1, stages=(1, 1, 1, 1), q_pool=3,
             q_stride=(1, 2, 2), mask_unit_size=(1, 8, 8), patch_kernel=(3, 7, 7), patch_stride=(2, 4, 4),
             patch_padding=(1, 3, 3), sep_pos_embed=True)


def to_official_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """Hiera3D kwargs -> official Hiera kwargs (in_chans; per-axis values as 3-tuples)."""
    out = dict(cfg)
    out["in_chans"] = out.pop("in_channels", 1)
    out.pop("out_features", None)
    for key in ("input_size", "q_stride", "mask_unit_size", "patch_kernel", "patch_stride", "patch_padding"):
        out[key] = ls_backbones.to_triple(out[key], key)
    return out


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter (position embeddings, norms and biases included) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1.0 + 0.1 * noise if "norm" in name and name.endswith("weight") else 0.1 * noise)


# ---------------------------------------------------------------------------------------- parity
PARITY = {
    # the official video model's layout: anisotropic strides, separable position embedding,
    # mask-unit attention in stages 0-1, global in 2-3, three query pools
    "video_like": dict(input_size=(8, 64, 64), in_channels=2, embed_dim=8, num_heads=1, stages=(1, 2, 2, 1),
                       q_pool=3, q_stride=(1, 2, 2), mask_unit_size=(1, 8, 8), patch_kernel=(3, 7, 7),
                       patch_stride=(2, 4, 4), patch_padding=(1, 3, 3), sep_pos_embed=True),
    # isotropic, joint embedding, 2 pools of 3 transitions (the official model unrolls one level more)
    "isotropic": dict(input_size=(32, 32, 32), in_channels=1, embed_dim=8, num_heads=2, stages=(1, 2, 2, 1),
                      q_pool=2, q_stride=2, mask_unit_size=4, patch_kernel=7, patch_stride=4,
                      patch_padding=3, sep_pos_embed=False),
    # a mask unit made of 1.5 unroll levels (4, 2, 2), three stages, non-overlapping patches
    "partial_mask_unit": dict(input_size=(16, 32, 32), in_channels=1, embed_dim=8, num_heads=1,
                              stages=(2, 1, 1), q_pool=2, q_stride=2, mask_unit_size=(4, 2, 2),
                              mask_unit_attn=(True, False, False), patch_kernel=4, patch_stride=4,
                              patch_padding=0, sep_pos_embed=True, out_features=("p2", "p3", "p4")),
}


@pytest.mark.parametrize("name", list(PARITY))
def test_matches_official_hiera_intermediates(name: str) -> None:
    hiera = import_official()
    cfg = PARITY[name]
    torch.manual_seed(0)
    official = hiera.Hiera(num_classes=5, **to_official_kwargs(cfg)).eval()
    randomize_(official, seed=1)
    ours = Hiera3D(**cfg).eval()
    loaded = ours.load_official_state_dict(official.state_dict())
    assert loaded.missing_keys == [] and loaded.unexpected_keys == []

    x = torch.randn(2, cfg["in_channels"], *ls_backbones.to_triple(cfg["input_size"]),
                    generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, intermediates = official(x, return_intermediates=True)  # each (B, T, H, W, C)
        out = ours(x)
    assert list(out) == [f"p{i + 2}" for i in range(len(cfg["stages"]))]
    assert len(intermediates) == len(out)
    diffs = {}
    for (key, feat), ref in zip(out.items(), intermediates, strict=True):
        ref = ref.permute(0, 4, 1, 2, 3)
        assert feat.shape == ref.shape, (key, feat.shape, ref.shape)
        assert ref.abs().max() > 0.1, f"{key}: degenerate reference"
        diffs[key] = (feat - ref).abs().max().item()
    print(f"{name}: max abs diff per output {diffs}")
    assert max(diffs.values()) <= 1e-4, diffs


def test_unroll_and_reroll_match_official() -> None:
    hiera = import_official()
    size, schedule = (4, 16, 24), [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    x = torch.randn(2, math.prod(size), 3)
    official_unroll = hiera.hiera_utils.Unroll(size, (1, 1, 1), schedule)
    official_reroll = hiera.hiera_utils.Reroll(size, (1, 1, 1), schedule, [0, 1, 2, 3], 3)
    u = unroll(x, size, schedule)
    torch.testing.assert_close(u, official_unroll(x), rtol=0, atol=0)
    torch.testing.assert_close(reroll(u, size, schedule), official_reroll(u, 0), rtol=0, atol=0)
    assert torch.equal(reroll(u, size, schedule), x.view(2, *size, 3))
    # after one pool of (1, 2, 2) the tokens cover (4, 8, 12) with two levels left
    pooled = u.view(2, 4, -1, 3).max(1).values
    torch.testing.assert_close(reroll(pooled, (4, 8, 12), schedule[1:]), official_reroll(pooled, 1),
                               rtol=0, atol=0)


@pytest.mark.parametrize(
    ("q_stride", "mask_unit_size", "input_size", "token"),
    [(2, 2, (16, 16, 16), (1, 2, 3)), ((1, 2, 2), (1, 4, 4), (16, 32, 32), (1, 6, 3))],
)
def test_mask_unit_attention_stays_within_a_mask_unit(q_stride, mask_unit_size, input_size, token) -> None:
    """Perturbing one patch changes the stage-0 output exactly on its mask unit (a spatial block)."""
    common = dict(input_size=input_size, embed_dim=8, stages=(2, 1, 1), q_pool=1, q_stride=q_stride,
                  mask_unit_size=mask_unit_size, patch_kernel=4, patch_stride=4, patch_padding=0,
                  out_features=("p2",))
    x = torch.randn(1, 1, *input_size)
    x2 = x.clone()
    x2[(0, 0, *(slice(t * 4, t * 4 + 4) for t in token))] += 1  # the patch of that token
    mu = ls_backbones.to_triple(mask_unit_size)
    block = tuple(slice(t // m * m, (t // m + 1) * m) for t, m in zip(token, mu, strict=True))
    for attn, expected_all in (((True, False, False), False), ((False, False, False), True)):
        torch.manual_seed(0)
        net = Hiera3D(mask_unit_attn=attn, **common).eval()
        with torch.no_grad():
            changed = (net(x)["p2"] - net(x2)["p2"]).abs().amax(dim=(0, 1)) > 0
        expected = torch.ones_like(changed) if expected_all else torch.zeros_like(changed)
        expected[block] = True
        assert torch.equal(changed, expected), (attn, changed.nonzero().tolist())


# ---------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    ("cfg", "shape"),
    [
        (ISO, (2, 1, 32, 32, 32)),        # exactly input_size
        (ISO, (1, 1, 16, 48, 80)),        # another size: odd multiples of size_divisibility
        (ANISO, (2, 2, 8, 64, 64)),       # anisotropic, exactly input_size
        (ANISO, (1, 2, 6, 32, 96)),       # anisotropic, another size
        ({**ISO, "sep_pos_embed": True, "out_features": ("p3", "p5")}, (1, 1, 48, 16, 32)),
    ],
    ids=["iso", "iso-resized", "aniso", "aniso-resized", "iso-sep-subset"],
)
def test_backbone_contract(check_contract, cfg, shape) -> None:
    torch.manual_seed(0)
    check_contract(Hiera3D(**cfg).eval(), shape)


def test_equal_stage_widths_with_query_pooling(check_contract) -> None:
    """dim_mul=1: the pooling blocks pool their shortcut too (no projection to pool)."""
    torch.manual_seed(0)
    net = Hiera3D(**{**ISO, "dim_mul": 1.0, "head_mul": 1.0}).eval()
    assert net.feature_channels == {"p2": 8, "p3": 8, "p4": 8, "p5": 8}
    check_contract(net, (1, 1, 32, 32, 32))


def test_defaults_follow_the_number_of_stages(check_contract) -> None:
    """Three stages: every stage is returned, two query pools, mask units in the first two."""
    cfg = {k: v for k, v in ISO.items() if k != "q_pool"}
    net = Hiera3D(**{**cfg, "stages": (1, 1, 1)})
    assert list(net.output_shape()) == ["p2", "p3", "p4"] and net.q_pool == 2
    assert net.mask_unit_attn == (True, True, False)
    check_contract(net.eval(), (1, 1, 32, 32, 32))
    assert Hiera3D(**cfg).q_pool == 3 and Hiera3D(**cfg).mask_unit_attn == (True, True, False, False)


def test_declared_strides_and_channels() -> None:
    net = Hiera3D(**ANISO)
    assert net.output_shape() == OrderedDict(
        p2=ls_backbones.FeatureSpec(8, (2, 4, 4)), p3=ls_backbones.FeatureSpec(16, (2, 8, 8)),
        p4=ls_backbones.FeatureSpec(32, (2, 16, 16)), p5=ls_backbones.FeatureSpec(64, (2, 32, 32)),
    )
    # strides stop growing after q_pool pools; widths keep multiplying
    net = Hiera3D(**ISO)
    assert net.feature_strides == {"p2": (4, 4, 4), "p3": (8, 8, 8), "p4": (16, 16, 16), "p5": (16, 16, 16)}
    assert net.feature_channels == {"p2": 8, "p3": 16, "p4": 32, "p5": 64}


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({}, (32, 32, 32)),                                         # 4 * 2**3
        (ANISO, (2, 32, 32)),                                       # (2, 4, 4) * (1, 2, 2)**3
        (ISO, (16, 16, 16)),                                        # q_pool=2, mask unit 2**2: 4 * 2**2
        ({**ISO, "q_pool": 1, "mask_unit_size": 8, "input_size": 64}, (32, 32, 32)),  # mask unit 2**3
        ({**ISO, "q_pool": 1, "mask_unit_attn": (False,) * 4}, (8, 8, 8)),  # no mask units: 4 * 2**1
        ({**ISO, "q_pool": 0, "mask_unit_attn": (False,) * 4, "patch_stride": (2, 4, 4),
          "patch_kernel": (3, 7, 7), "patch_padding": (1, 3, 3)}, (2, 4, 4)),  # patch stride only
    ],
    ids=["default", "aniso", "qpool2-mu4", "qpool1-mu8", "no-mask-units", "no-pooling"],
)
def test_size_divisibility_rule(check_contract, cfg, expected) -> None:
    with torch.device("meta" if not cfg else "cpu"):  # the default (Hiera-B) only declares
        net = Hiera3D(**cfg).eval()
    assert net.size_divisibility == expected
    if cfg:  # the rule is not too strict: an input of exactly (3 x) that size runs and matches
        check_contract(net, (1, net.in_channels, *(3 * d for d in expected)))


def test_input_not_divisible_is_rejected_with_the_rule() -> None:
    net = Hiera3D(**ISO)
    rule = r"\(D, H, W\)=\(16, 24, 32\).*size_divisibility \(z, y, x\)=\(16, 16, 16\)"
    with pytest.raises(ValueError, match=rule):
        net(torch.zeros(1, 1, 16, 24, 32))
    with pytest.raises(ValueError, match=r"pad_to_divisible"):
        net(torch.zeros(1, 1, 8, 16, 16))


def test_out_features_subset_matches_full_model_and_stops_early() -> None:
    torch.manual_seed(0)
    full = Hiera3D(**ISO).eval()
    part = Hiera3D(**{**ISO, "out_features": ("p4", "p2")}).eval()
    part.load_state_dict(full.state_dict())
    assert list(part.output_shape()) == ["p2", "p4"]  # stage order
    calls = []
    part.blocks[-1].register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        a, b = full(x), part(x)
    assert list(b) == ["p2", "p4"]
    for key in b:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
    assert calls == [], "the block of stage p5 ran although p5 was not requested"


@pytest.mark.parametrize("bad", [("p6",), ("res2",), (), ("p2", "p2")])
def test_bad_out_features(bad) -> None:
    with pytest.raises(ValueError, match=r"out_features must be a non-empty subset.*'p2', 'p3', 'p4', 'p5'"):
        Hiera3D(**{**ISO, "out_features": bad})


# ---------------------------------------------------------------------------------------- pos embed
def test_pos_embed_on_its_own_grid_is_the_parameter() -> None:
    hiera = import_official()
    net = Hiera3D(**ISO)
    assert net.get_pos_embed((8, 8, 8)) is net.pos_embed
    sep = Hiera3D(**ANISO)
    t, s = sep.pos_embed_temporal, sep.pos_embed_spatial
    reference = hiera.Hiera.get_pos_embed(sep)  # the official formula, on our parameters
    torch.testing.assert_close(sep.get_pos_embed((4, 16, 16)), reference, rtol=0, atol=0)
    torch.testing.assert_close(reference, s.repeat(1, 4, 1) + t.repeat_interleave(256, dim=1))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_joint_pos_embed_interpolation_keeps_axis_order(axis: int) -> None:
    """An embedding that varies along one axis only stays so when the other two axes are resized."""
    net = Hiera3D(**{**ISO, "input_size": (32, 48, 64)})  # token grid (8, 12, 16)
    grid = net.tokens_spatial_shape
    coord = torch.arange(grid[axis], dtype=torch.float32)
    ramp = coord.view([-1 if a == axis else 1 for a in range(3)]).expand(grid)
    with torch.no_grad():
        net.pos_embed.copy_(ramp.reshape(1, -1, 1).expand_as(net.pos_embed))
    new_grid = tuple(g if a == axis else g * 2 - 4 for a, g in enumerate(grid))
    pos = net.get_pos_embed(new_grid)
    assert pos.shape == (1, math.prod(new_grid), 8)
    expected = coord.view([-1 if a == axis else 1 for a in range(3)]).expand(new_grid)
    torch.testing.assert_close(pos[0, :, 3].reshape(new_grid), expected)


def test_separable_pos_embed_interpolation_equals_trilinear_of_the_joint_one() -> None:
    """Bilinear over (y, x) plus linear over z is trilinear interpolation of the summed embedding."""
    net = Hiera3D(**ANISO)  # token grid (4, 16, 16)
    joint = net.get_pos_embed((4, 16, 16)).transpose(1, 2).reshape(1, 8, 4, 16, 16)
    for new_grid in [(3, 8, 24), (6, 16, 16), (4, 24, 8)]:
        expected = F.interpolate(joint, size=new_grid, mode="trilinear", align_corners=False)
        got = net.get_pos_embed(new_grid).transpose(1, 2).reshape(1, 8, *new_grid)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got, F.interpolate(joint, size=new_grid, mode="nearest"))


# ---------------------------------------------------------------------------------------- training
def test_drop_path_is_identity_in_eval_and_active_in_train() -> None:
    torch.manual_seed(0)
    plain = Hiera3D(**ISO)
    dropped = Hiera3D(**{**ISO, "drop_path_rate": 0.5})
    dropped.load_state_dict(plain.state_dict())
    assert dropped.blocks[0].drop_path.p == 0.0 and dropped.blocks[-1].drop_path.p == 0.5
    x = torch.randn(4, 1, 32, 32, 32)
    with torch.no_grad():
        ref = plain.eval()(x)
        out = dropped.eval()(x)
        for key in ref:
            torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)
        train = dropped.train()(x)
    assert not torch.allclose(train["p5"], ref["p5"])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = Hiera3D(**{**ANISO, "drop_path_rate": 0.1}).train()
    out = net(torch.randn(2, 2, 8, 64, 64))
    sum(o.square().mean() for o in out.values()).backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


# ---------------------------------------------------------------------------------------- presets
# Parameter counts of the official 2-D models hiera_{tiny,small,base}_224 (in_chans=3,
# 1000 classes), as built by hiera-transformer 0.1.4.
OFFICIAL_2D = {hiera3d_t: 27_910_216, hiera3d_s: 35_008_072, hiera3d_b: 51_524_968}


@pytest.mark.parametrize("preset", list(OFFICIAL_2D), ids=lambda f: f.__name__)
def test_preset_parameter_counts_match_official_adjusted_for_3d(preset) -> None:
    with torch.device("meta"):
        net = preset()
    # official 2-D: patch embed Conv2d(3, 96, 7), pos embed 56*56, head 768 -> 1000, final norm
    blocks_2d = OFFICIAL_2D[preset] - (96 * 3 * 49 + 96) - 96 * 56 * 56 - (768 * 1000 + 1000) - 2 * 768
    # ours: Conv3d(1, 96, 7), pos embed over the (16, 32, 32) tokens of (64, 128, 128)
    expected = blocks_2d + (96 * 343 + 96) + 96 * 16 * 32 * 32
    assert sum(p.numel() for p in net.parameters()) == expected
    assert net.size_divisibility == (32, 32, 32)
    assert net.input_size == (64, 128, 128) and net.in_channels == 1


def test_presets_defaults_and_overrides(check_contract) -> None:
    with torch.device("meta"):
        assert hiera3d_t().stages == (1, 2, 7, 2)
        assert hiera3d_s().stages == (1, 2, 11, 2)
        assert hiera3d_b().stages == (2, 3, 16, 3)
        aniso = hiera3d_b(q_stride=(1, 2, 2), mask_unit_size=(1, 8, 8), patch_stride=(2, 4, 4),
                          input_size=(32, 128, 128), embed_dim=64, num_heads=2)
    assert aniso.size_divisibility == (2, 32, 32)
    assert aniso.feature_strides["p5"] == (2, 32, 32) and aniso.feature_channels["p5"] == 512
    torch.manual_seed(0)
    check_contract(hiera3d_t(input_size=32, in_channels=2).eval(), (1, 2, 32, 32, 64))


def test_registry_and_lazy_export() -> None:
    assert ls_backbones.Hiera3D is Hiera3D
    net = ls_backbones.create_backbone("hiera3d", **ISO)
    assert isinstance(net, Hiera3D) and isinstance(net, ls_backbones.Backbone3D)
    assert ls_backbones.get_backbone_builder("hiera3d_s") is hiera3d_s


# ---------------------------------------------------------------------------------------- errors
def test_input_errors_name_the_shape() -> None:
    net = Hiera3D(**ANISO)
    with pytest.raises(ValueError, match=r"5-D input .* shape \(2, 8, 64, 64\)"):
        net(torch.zeros(2, 8, 64, 64))
    with pytest.raises(ValueError, match=r"in_channels=2 .* shape \(1, 1, 8, 64, 64\) has 1 channels"):
        net(torch.zeros(1, 1, 8, 64, 64))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"q_stride": (1, 2, 2), "mask_unit_size": 8},
         r"mask_unit_size \(z, y, x\)=\(8, 8, 8\) is not a block .* q_stride=\(1, 2, 2\).*\(1, 8, 8\)"),
        ({"mask_unit_size": (2, 4, 4)}, r"mask_unit_size \(z, y, x\)=\(2, 4, 4\) is not a block"),
        ({"mask_unit_size": 2, "mask_unit_attn": (True, True, True, False)},
         r"block 2 \(stage 2\).*2 query pool.*smaller than the pooled window \(4, 4, 4\)"),
        ({"q_pool": 4}, r"q_pool must be in \[0, len\(stages\) - 1\] = \[0, 3\], got 4"),
        ({"mask_unit_attn": (True, False)}, r"mask_unit_attn needs one flag per stage \(4"),
        ({"embed_dim": 10, "num_heads": 4}, r"stage 0 has width 10 and 4 heads"),
        ({"patch_kernel": 4, "patch_padding": 2}, r"patch_kernel \(4, 4, 4\), patch_stride \(4, 4, 4\)"),
        ({"input_size": (40, 32, 32)},
         r"input_size \(z, y, x\)=\(40, 32, 32\) .* size_divisibility=\(16, 16, 16\)"),
        ({"stages": (1, 0, 1, 1)}, r"stages must be a non-empty sequence of positive"),
        ({"drop_path_rate": 1.0}, r"drop_path_rate must be in \[0, 1\)"),
    ],
)
def test_config_errors(override, message) -> None:
    with pytest.raises(ValueError, match=message):
        Hiera3D(**{**ISO, **override})


def test_mask_unit_levels() -> None:
    assert mask_unit_levels((8, 8, 8), (2, 2, 2), 3) == 3
    assert mask_unit_levels((1, 8, 8), (1, 2, 2), 3) == 3
    assert mask_unit_levels((4, 2, 2), (2, 2, 2), 3) == 2
    assert mask_unit_levels((1, 1, 1), (2, 2, 2), 3) == 0
    with pytest.raises(ValueError, match="is not a block"):
        mask_unit_levels((8, 8, 8), (2, 2, 2), 2)  # needs 3 levels


def official_like_state_dict(cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A state dict with the official keys: ours plus a head and a final norm."""
    sd = dict(Hiera3D(**cfg).state_dict())
    sd.update({"norm.weight": torch.ones(64), "norm.bias": torch.zeros(64),
               "head.projection.weight": torch.zeros(3, 64), "head.projection.bias": torch.zeros(3)})
    return sd


def test_load_official_state_dict_drops_head_and_norm_and_loads_the_rest() -> None:
    sd = official_like_state_dict(ISO)
    net = Hiera3D(**ISO)
    result = net.load_official_state_dict({"model_state": sd})  # the official download format
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(net.blocks[2].attn.qkv.weight, sd["blocks.2.attn.qkv.weight"], rtol=0, atol=0)


def test_load_official_state_dict_names_bad_keys_and_shapes() -> None:
    net = Hiera3D(**ISO)
    sd = official_like_state_dict(ISO)
    sd["blocks.0.attn.extra"] = torch.zeros(1)
    del sd["blocks.1.norm1.weight"]
    with pytest.raises(RuntimeError, match=r"missing key\(s\): \['blocks.1.norm1.weight'\].*"
                                           r"unexpected key\(s\): \['blocks.0.attn.extra'\].*strict=False"):
        net.load_official_state_dict(sd)
    result = net.load_official_state_dict(sd, strict=False)
    assert result.missing_keys == ["blocks.1.norm1.weight"]
    assert result.unexpected_keys == ["blocks.0.attn.extra"]

    sd = official_like_state_dict(ISO)
    sd["blocks.3.mlp.fc1.weight"] = torch.zeros(5, 64)
    message = r"blocks.3.mlp.fc1.weight: checkpoint \(5, 64\) vs model \(256, 64\)"
    with pytest.raises(RuntimeError, match=message):
        net.load_official_state_dict(sd, strict=False)

    sd = official_like_state_dict({**ISO, "input_size": 64})
    message = r"pos_embed: checkpoint \(1, 4096, 8\) vs model \(1, 512, 8\).*input_size"
    with pytest.raises(RuntimeError, match=message):
        net.load_official_state_dict(sd)

    sd = official_like_state_dict({**ISO, "sep_pos_embed": True})
    message = r"missing key\(s\): \['pos_embed'\].*pos_embed_spatial.*sep_pos_embed"
    with pytest.raises(RuntimeError, match=message):
        net.load_official_state_dict(sd)
