"""ViTDet3D and SimpleFeaturePyramid3D: contract, numerics against loop references, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ls_backbones
from ls_backbones.layers import DropPath, LayerNorm3d
from ls_backbones.vitdet import SimpleFeaturePyramid3D, ViTDet3D, vitdet3d_b, vitdet3d_s

TINY: dict[str, Any] = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "patch_size": 4,
    "pretrain_img_size": 16,
    "img_size": 16,
}


def tiny(seed: int = 0, **kwargs: Any) -> ViTDet3D:
    torch.manual_seed(seed)
    return ViTDet3D(**{**TINY, **kwargs}).eval()


def randomize_rel_pos(model: nn.Module, std: float = 0.5) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos_" in name:
                p.normal_(0.0, std)


# ----------------------------------------------------------------------------------------
# Loop references, written independently of the implementation's vectorised code


def ref_interp(table: Tensor, length: int) -> Tensor:
    """Linear resize of the rows of ``table`` to ``length`` (half-pixel centres, clamped)."""
    n = table.shape[0]
    if n == length:
        return table
    rows = []
    for i in range(length):
        src = max((i + 0.5) * n / length - 0.5, 0.0)
        lo = min(math.floor(src), n - 1)
        hi = min(lo + 1, n - 1)
        w = src - lo
        rows.append(table[lo] * (1 - w) + table[hi] * w)
    return torch.stack(rows)


def ref_attention(attn: nn.Module, tokens: Tensor, coords: list, extent=None) -> Tensor:
    """Multi-head attention of ``tokens`` (n, C) at grid ``coords`` with explicit loops.

    With ``extent`` (the (z, y, x) lengths the offsets range over), adds the decomposed
    relative position bias ``q . T_a[c_q[a] - c_k[a] + extent[a] - 1]`` over axes a with the
    unscaled query, the tables resized to ``2 * extent - 1`` rows.
    """
    c = tokens.shape[1]
    nh = attn.num_heads
    hd = c // nh
    qkv = tokens @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    tables = None
    if extent is not None:
        raw = (attn.rel_pos_z, attn.rel_pos_y, attn.rel_pos_x)
        tables = [ref_interp(t, 2 * e - 1) for t, e in zip(raw, extent, strict=True)]
    heads = []
    for h in range(nh):
        qh, kh, vh = (t[:, h * hd : (h + 1) * hd] for t in (q, k, v))
        logits = qh @ kh.T / math.sqrt(hd)
        if tables is not None:
            bias = torch.zeros_like(logits)
            for i, ci in enumerate(coords):
                for j, cj in enumerate(coords):
                    for a in range(3):
                        bias[i, j] += qh[i] @ tables[a][ci[a] - cj[a] + extent[a] - 1]
            logits = logits + bias
        heads.append(logits.softmax(-1) @ vh)
    return torch.cat(heads, 1) @ attn.proj.weight.T + attn.proj.bias


def ref_windowed_attention(attn: nn.Module, x: Tensor, window, rel_pos: bool) -> Tensor:
    """Attention within each window of the zero-padded grid ``x`` (B, D, H, W, C), by loops."""
    b, d, h, w, c = x.shape
    wz, wy, wx = window
    dp, hp, wp = (math.ceil(s / t) * t for s, t in zip((d, h, w), window, strict=True))
    xp = x.new_zeros(b, dp, hp, wp, c)
    xp[:, :d, :h, :w] = x
    out = torch.zeros_like(xp)
    local = [(i, j, k) for i in range(wz) for j in range(wy) for k in range(wx)]
    for n in range(b):
        for z0 in range(0, dp, wz):
            for y0 in range(0, hp, wy):
                for x0 in range(0, wp, wx):
                    tokens = torch.stack([xp[n, z0 + i, y0 + j, x0 + k] for i, j, k in local])
                    res = ref_attention(attn, tokens, local, window if rel_pos else None)
                    for (i, j, k), r in zip(local, res, strict=True):
                        out[n, z0 + i, y0 + j, x0 + k] = r
    return out[:, :d, :h, :w]


def ref_global_attention(attn: nn.Module, x: Tensor, rel_pos: bool) -> Tensor:
    b, d, h, w, c = x.shape
    coords = [(i, j, k) for i in range(d) for j in range(h) for k in range(w)]
    out = [
        ref_attention(attn, x[n].reshape(-1, c), coords, (d, h, w) if rel_pos else None)
        for n in range(b)
    ]
    return torch.stack(out).reshape(b, d, h, w, c)


def ref_block(block: nn.Module, x: Tensor, attention) -> Tensor:
    y = x + attention(block.attn, block.norm1(x))
    return y + block.mlp(block.norm2(y))


# ----------------------------------------------------------------------------------------
# Contract


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({}, (2, 1, 16, 16, 16)),  # token grid = pretraining grid, global attention
        ({}, (1, 1, 8, 24, 12)),  # other grid: resized pos_embed
        (  # anisotropic patches, padded windows, rel pos, residual block
            {"patch_size": (4, 8, 8), "pretrain_img_size": (16, 64, 64), "use_rel_pos": True,
             "window_size": (3, 3, 3), "window_block_indexes": (0,),
             "residual_block_indexes": (1,), "img_size": (16, 64, 64)},
            (1, 1, 16, 64, 32),
        ),
        (
            {"in_channels": 2, "patch_size": (2, 4, 4), "use_abs_pos": False, "depth": 3,
             "use_rel_pos": True, "window_size": (2, 2, 2), "window_block_indexes": (0, 2),
             "pretrain_use_cls_token": True},
            (2, 2, 6, 12, 20),
        ),
    ],
)
def test_vitdet_contract(check_contract, kwargs: dict, shape: tuple) -> None:
    model = tiny(**kwargs)
    spec = model.output_shape()
    assert list(spec) == ["last_feat"]
    assert spec["last_feat"].channels == 32
    assert spec["last_feat"].stride == model.patch_size == model.size_divisibility
    check_contract(model, shape)


def test_vitdet_out_feature_name_and_channels_last_layout() -> None:
    model = tiny(out_feature="res5")
    x = torch.randn(1, 1, 8, 12, 16)
    with torch.no_grad():
        out = model(x)
        tokens = model.patch_embed(x) + pos(model, x)
        for block in model.blocks:
            tokens = block(tokens)
    assert list(out) == ["res5"]
    # (B, D, H, W, C) tokens become (B, C, D, H, W) with z, y, x in place
    torch.testing.assert_close(out["res5"], tokens.permute(0, 4, 1, 2, 3))


def pos(model: ViTDet3D, x: Tensor) -> Tensor:
    grid = tuple(s // p for s, p in zip(x.shape[-3:], model.patch_size, strict=True))
    pe = model.pos_embed[:, 1:] if model.pretrain_use_cls_token else model.pos_embed
    pe = pe.reshape(1, *model.pretrain_grid, -1).permute(0, 4, 1, 2, 3)
    if grid != model.pretrain_grid:
        pe = F.interpolate(pe, size=grid, mode="trilinear", align_corners=False)
    return pe.permute(0, 2, 3, 4, 1)


@pytest.mark.parametrize(
    ("scale_factors", "net_kwargs", "shape", "expected"),
    [
        (  # detectron2's default on a stride-16 net: p2..p5 and p6 from the top block
            (4.0, 2.0, 1.0, 0.5), {"patch_size": 16, "pretrain_img_size": 32, "img_size": 32},
            (1, 1, 64, 64, 64),
            {"p2": (4, 4, 4), "p3": (8, 8, 8), "p4": (16, 16, 16), "p5": (32, 32, 32),
             "p6": (64, 64, 64)},
        ),
        (  # anisotropic net and per-axis factors: z is upsampled less than y and x
            ((1, 4, 4), (1, 2, 2), 1, 0.5), {"patch_size": (4, 8, 8)}, (1, 1, 16, 64, 32),
            {"p1": (4, 2, 2), "p2": (4, 4, 4), "p3": (4, 8, 8), "p4": (8, 16, 16),
             "p5": (16, 32, 32)},
        ),
        (  # factors beyond detectron2's set, mixed up/down per axis
            ((0.5, 2, 2), 0.25), {"patch_size": (2, 4, 4)}, (1, 1, 16, 32, 32),
            {"p1": (4, 2, 2), "p4": (8, 16, 16), "p5": (16, 32, 32)},
        ),
    ],
)
def test_sfp_contract(check_contract, scale_factors, net_kwargs, shape, expected) -> None:
    net = tiny(**net_kwargs)
    sfp = SimpleFeaturePyramid3D(net, out_channels=8, scale_factors=scale_factors).eval()
    assert {k: v.stride for k, v in sfp.output_shape().items()} == expected
    assert list(sfp.output_shape()) == list(expected)  # finest first, top block last
    assert all(v.channels == 8 for v in sfp.output_shape().values())
    strides = list(expected.values())
    assert sfp.size_divisibility == tuple(
        math.lcm(net.size_divisibility[a], *(s[a] for s in strides)) for a in range(3)
    )
    assert sfp.net is net and sfp.in_channels == net.in_channels and sfp.out_channels == 8
    out = check_contract(sfp, shape)
    last, top = list(out)[-2:]
    torch.testing.assert_close(out[top], out[last][:, :, ::2, ::2, ::2])


def test_sfp_level_structure_and_norm() -> None:
    net = tiny(patch_size=(4, 8, 8))
    sfp = SimpleFeaturePyramid3D(net, out_channels=8, scale_factors=((2, 4, 4), 2, 1, 0.5),
                                 top_block=False)
    assert list(sfp.output_shape()) == ["p1", "p2", "p3", "p4"]
    assert sfp.output_shape()["p1"].stride == (2, 2, 2)
    iso = SimpleFeaturePyramid3D(net, out_channels=8, scale_factors=(4,)).simfp_1
    aniso = sfp.simfp_1
    # scale 4: ConvTranspose3d, norm, GELU, ConvTranspose3d (channels halved twice), 1^3, 3^3
    assert [type(m) for m in iso[:4]] == [nn.ConvTranspose3d, LayerNorm3d, nn.GELU,
                                          nn.ConvTranspose3d]
    assert (iso[0].in_channels, iso[0].out_channels, iso[3].out_channels) == (32, 16, 8)
    # (2, 4, 4): the second ConvTranspose3d leaves z alone
    assert aniso[0].stride == aniso[0].kernel_size == (2, 2, 2)
    assert aniso[3].stride == aniso[3].kernel_size == (1, 2, 2)
    assert isinstance(sfp.simfp_4[0], nn.MaxPool3d) and sfp.simfp_4[0].stride == (2, 2, 2)
    conv1, conv3 = sfp.simfp_3[0], sfp.simfp_3[1]
    assert conv1.kernel_size == (1, 1, 1) and conv3.kernel_size == (3, 3, 3)
    assert conv3.padding == (1, 1, 1)
    assert conv1.bias is None and isinstance(conv1.norm, LayerNorm3d)
    plain = SimpleFeaturePyramid3D(net, out_channels=8, scale_factors=(1,), norm="none")
    assert plain.simfp_3[0].bias is not None and isinstance(plain.simfp_3[0].norm, nn.Identity)
    assert list(plain.output_shape()) == ["p3", "p4"]
    # detectron2-style keys, for converting 2-D checkpoints
    keys = set(sfp.state_dict())
    assert {"simfp_1.0.weight", "simfp_1.1.weight", "simfp_1.4.weight", "simfp_1.4.norm.weight",
            "simfp_3.1.norm.bias"} <= keys


# ----------------------------------------------------------------------------------------
# Absolute position embeddings


def capture_block0_input(model: ViTDet3D, x: Tensor) -> Tensor:
    seen: list[Tensor] = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def test_abs_pos_unchanged_on_pretrain_grid_and_cls_token_dropped() -> None:
    model = tiny(pretrain_use_cls_token=True)
    assert model.pos_embed.shape == (1, 1 + 4 * 4 * 4, 32)
    with torch.no_grad():
        model.pos_embed[:, 0] = 1e3  # the cls row must never reach the tokens
    x = torch.randn(2, 1, 16, 16, 16)
    got = capture_block0_input(model, x)
    with torch.no_grad():
        expected = model.patch_embed.proj(x).permute(0, 2, 3, 4, 1)
        expected = expected + model.pos_embed[0, 1:].reshape(4, 4, 4, 32)  # z, y, x raster
    torch.testing.assert_close(got, expected)


def test_abs_pos_trilinear_resize_to_other_grids() -> None:
    model = tiny(pretrain_img_size=(8, 16, 24))  # pretraining grid (2, 4, 6)
    x = torch.randn(1, 1, 12, 8, 32)  # grid (3, 2, 8): bigger in z and x, smaller in y
    got = capture_block0_input(model, x)
    with torch.no_grad():
        grid_pe = model.pos_embed.reshape(1, 2, 4, 6, 32).permute(0, 4, 1, 2, 3)
        resized = F.interpolate(grid_pe, size=(3, 2, 8), mode="trilinear", align_corners=False)
        expected = model.patch_embed.proj(x) + resized
    torch.testing.assert_close(got, expected.permute(0, 2, 3, 4, 1))
    # no pos_embed at all when disabled
    off = tiny(use_abs_pos=False)
    assert off.pos_embed is None
    with torch.no_grad():
        torch.testing.assert_close(
            capture_block0_input(off, x), off.patch_embed.proj(x).permute(0, 2, 3, 4, 1)
        )


# ----------------------------------------------------------------------------------------
# Attention


def test_windowed_attention_with_padding_matches_loop_reference() -> None:
    # grid (3, 5, 4) and window (2, 2, 3): padded on every axis, 2*3*2 windows per volume
    model = tiny(patch_size=2, window_size=(2, 2, 3), window_block_indexes=(0,))
    block = model.blocks[0]
    assert block.window_size == (2, 2, 3) and model.blocks[1].window_size is None
    x = torch.randn(2, 3, 5, 4, 32)
    with torch.no_grad():
        got = block(x)
        expected = ref_block(block, x, lambda a, t: ref_windowed_attention(a, t, (2, 2, 3), False))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # and not what global attention gives
    with torch.no_grad():
        global_out = ref_block(block, x, lambda a, t: ref_global_attention(a, t, False))
    assert not torch.allclose(got, global_out, atol=1e-3)


def test_windowed_rel_pos_matches_loop_reference() -> None:
    model = tiny(patch_size=2, window_size=(2, 3, 2), window_block_indexes=(0,), use_rel_pos=True)
    block = model.blocks[0]
    assert block.attn.rel_pos_z.shape == (3, 16)  # 2 * window - 1 rows, head_dim columns
    assert block.attn.rel_pos_y.shape == (5, 16) and block.attn.rel_pos_x.shape == (3, 16)
    randomize_rel_pos(model)
    x = torch.randn(1, 3, 4, 3, 32)
    with torch.no_grad():
        got = block(x)
        expected = ref_block(block, x, lambda a, t: ref_windowed_attention(a, t, (2, 3, 2), True))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_global_rel_pos_with_resized_tables_matches_loop_reference() -> None:
    # global tables sized for img_size 16 / patch 4 = 4 tokens (7 rows); the grid (2, 3, 5)
    # needs 3, 5 and 9 rows: shrinking and growing interpolation
    model = tiny(use_rel_pos=True, use_abs_pos=False)
    block = model.blocks[1]
    assert block.attn.rel_pos_x.shape == (7, 16)
    randomize_rel_pos(model)
    x = torch.randn(2, 2, 3, 5, 32)
    with torch.no_grad():
        got = block(x)
        expected = ref_block(block, x, lambda a, t: ref_global_attention(a, t, True))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_window_covering_the_grid_equals_global_attention() -> None:
    kwargs = {"patch_size": 2, "use_rel_pos": True, "img_size": (6, 8, 4)}  # grid (3, 4, 2)
    windowed = tiny(window_size=(3, 4, 2), window_block_indexes=(0, 1), **kwargs)
    global_ = tiny(**kwargs)
    randomize_rel_pos(windowed)
    global_.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 1, 6, 8, 4)
    with torch.no_grad():
        torch.testing.assert_close(windowed(x)["last_feat"], global_(x)["last_feat"])


def test_rel_pos_zero_init_is_no_rel_pos_and_nonzero_changes_output() -> None:
    with_rel = tiny(use_rel_pos=True, window_size=2, window_block_indexes=(0,))
    without = tiny(window_size=2, window_block_indexes=(0,))
    result = without.load_state_dict(with_rel.state_dict(), strict=False)
    assert not result.missing_keys
    assert sorted(result.unexpected_keys) == sorted(
        f"blocks.{i}.attn.rel_pos_{a}" for i in range(2) for a in "zyx"
    )
    assert all(torch.all(p == 0) for n, p in with_rel.named_parameters() if "rel_pos" in n)
    x = torch.randn(1, 1, 12, 16, 8)
    with torch.no_grad():
        base = without(x)["last_feat"]
        torch.testing.assert_close(with_rel(x)["last_feat"], base)
        randomize_rel_pos(with_rel)
        assert not torch.allclose(with_rel(x)["last_feat"], base, atol=1e-3)
    random_init = tiny(use_rel_pos=True, rel_pos_zero_init=False)
    assert all(p.abs().sum() > 0 for n, p in random_init.named_parameters() if "rel_pos" in n)


# ----------------------------------------------------------------------------------------
# Residual blocks, drop path, init, gradients


def test_residual_blocks_start_as_identity() -> None:
    with_res = tiny(residual_block_indexes=(0, 1))
    plain = tiny()
    result = plain.load_state_dict(with_res.state_dict(), strict=False)
    assert all(k.startswith(("blocks.0.residual.", "blocks.1.residual."))
               for k in result.unexpected_keys)
    res = with_res.blocks[0].residual
    assert [n for n, _ in res.named_children()] == [
        "conv1", "norm1", "act1", "conv2", "norm2", "act2", "conv3", "norm3"]
    assert res.conv1.kernel_size == (1, 1, 1) and res.conv2.kernel_size == (3, 3, 3)
    assert res.conv1.out_channels == 16 and res.conv2.bias is None
    assert torch.all(res.norm3.weight == 0) and torch.all(res.norm3.bias == 0)
    assert torch.all(res.norm1.weight == 1)
    x = torch.randn(1, 1, 8, 16, 12)
    with torch.no_grad():
        base = plain(x)["last_feat"]
        torch.testing.assert_close(with_res(x)["last_feat"], base)
        res.norm3.weight.fill_(1.0)
        assert not torch.allclose(with_res(x)["last_feat"], base, atol=1e-3)


def test_drop_path_linear_schedule_identity_in_eval_stochastic_in_train() -> None:
    model = tiny(depth=3, drop_path_rate=0.5)
    assert isinstance(model.blocks[0].drop_path, nn.Identity)
    assert [b.drop_path.p for b in model.blocks[1:]] == [0.25, 0.5]
    assert all(isinstance(b.drop_path, DropPath) for b in model.blocks[1:])
    reference = tiny(depth=3)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(8, 1, 8, 8, 8)
    with torch.no_grad():
        expected = reference(x)["last_feat"]
        torch.testing.assert_close(model(x)["last_feat"], expected)
        model.train()
        torch.manual_seed(1)
        a = model(x)["last_feat"]
        torch.manual_seed(2)
        b = model(x)["last_feat"]
        assert not torch.allclose(a, b)
        assert not torch.allclose(a, expected)
        reference.train()  # without drop path, train mode changes nothing
        torch.testing.assert_close(reference(x)["last_feat"], expected)


def test_drop_path_drops_each_residual_branch_per_sample() -> None:
    block = tiny(depth=2, drop_path_rate=0.5).blocks[1].train()  # p = 0.5, kept x 2
    x = torch.randn(32, 2, 2, 2, 32)
    torch.manual_seed(3)
    with torch.no_grad():
        out = block(x)
        seen = set()
        for n in range(x.shape[0]):
            xn = x[n : n + 1]
            attn = block.attn(block.norm1(xn))
            matches = []
            for keep_attn in (0, 1):
                y = xn + 2 * keep_attn * attn
                mlp = block.mlp(block.norm2(y))
                for keep_mlp in (0, 1):
                    if torch.allclose(out[n : n + 1], y + 2 * keep_mlp * mlp, atol=1e-5):
                        matches.append((keep_attn, keep_mlp))
            assert len(matches) == 1, (n, matches)
            seen.add(matches[0])
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}  # independent draws for the two branches


def test_init_follows_detectron2() -> None:
    model = ViTDet3D(embed_dim=64, depth=2, num_heads=2, patch_size=4, pretrain_img_size=64)
    for name, p in model.named_parameters():
        if name == "pos_embed" or (name.endswith("weight") and p.dim() == 2):  # Linear
            assert 0.017 < p.std() < 0.023 and abs(p.mean()) < 0.005, name
        elif name.startswith("blocks") and name.endswith("bias") and "norm" not in name:
            assert torch.all(p == 0), name
        elif ".norm" in name and name.endswith("weight"):
            assert torch.all(p == 1), name


def test_gradients_reach_every_parameter() -> None:
    net = tiny(depth=3, use_rel_pos=True, window_size=(2, 2, 2), window_block_indexes=(0, 2),
               residual_block_indexes=(1,), drop_path_rate=0.2)
    with torch.no_grad():  # move the zero-initialised last norm off zero, or nothing reaches
        net.blocks[1].residual.norm3.weight.fill_(0.5)  # the convs behind it
    sfp = SimpleFeaturePyramid3D(net, out_channels=8, scale_factors=(4, 2, 1, 0.5)).train()
    x = torch.randn(2, 1, 16, 16, 16)
    out = sfp(x)
    torch.manual_seed(0)
    # a random projection: a plain sum after a LayerNorm has zero gradient
    loss = sum((o * torch.randn_like(o)).sum() for o in out.values())
    loss.backward()
    for name, p in sfp.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------------------
# Presets and registry


def expected_param_count(d: int, depth: int, heads: int, window, n_global: int) -> int:
    hd = d // heads
    per_block = 12 * d * d + 13 * d  # qkv, proj, fc1 (4d), fc2, two LayerNorms
    rel_window = sum(2 * w - 1 for w in window) * hd
    rel_global = sum(2 * g - 1 for g in (4, 8, 8)) * hd  # img_size (64, 128, 128) / 16
    patch = 16**3 * 1 * d + d
    pos = 4 * 14 * 14 * d  # pretrain (64, 224, 224) / 16
    return (depth * per_block + (depth - n_global) * rel_window + n_global * rel_global
            + patch + pos)


@pytest.mark.parametrize(
    ("builder", "d", "heads", "params_2d"),
    [(vitdet3d_s, 384, 6, 22.05e6), (vitdet3d_b, 768, 12, 86.57e6)],
)
def test_presets(builder, d: int, heads: int, params_2d: float) -> None:
    with torch.device("meta"):
        model = builder()
    assert (model.embed_dim, model.depth, model.num_heads) == (d, 12, heads)
    assert model.window_size == (2, 4, 4)
    assert model.window_block_indexes == (0, 1, 3, 4, 6, 7, 9, 10)
    assert model.blocks[-1].drop_path.p == pytest.approx(0.1)
    assert model.blocks[6].drop_path.p == pytest.approx(0.1 * 6 / 11)
    assert model.blocks[0].attn.use_rel_pos and model.patch_size == (16, 16, 16)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_param_count(d, 12, heads, (2, 4, 4), 4)
    # the 2-D ViT (timm's count, with its 1000-class head) plus a bigger 3-D patch embedding
    assert 0.95 * params_2d < n < 1.1 * params_2d
    with torch.device("meta"):
        deep = builder(depth=24, drop_path_rate=0.4, in_channels=2)
        flat = builder(window_size=0)
        custom = builder(window_block_indexes=(0,), window_size=(1, 2, 2))
    assert deep.window_block_indexes == tuple(i for i in range(24) if i not in (5, 11, 17, 23))
    assert deep.in_channels == 2 and deep.blocks[-1].drop_path.p == pytest.approx(0.4)
    assert flat.window_size is None and all(b.window_size is None for b in flat.blocks)
    assert custom.window_block_indexes == (0,) and custom.blocks[0].window_size == (1, 2, 2)


def test_preset_runs_on_a_typical_crop(check_contract) -> None:
    # the preset's windows and global blocks on a 64x128x128 crop (a narrower, shallower net)
    torch.manual_seed(0)
    model = vitdet3d_s(embed_dim=32, num_heads=2, depth=8).eval()
    assert model.window_block_indexes == (0, 2, 4, 6)  # global: the last of each quarter
    assert model.blocks[0].attn.rel_pos_y.shape == (7, 16)
    check_contract(model, (1, 1, 64, 128, 128))


def test_registry_and_lazy_exports() -> None:
    assert ls_backbones.ViTDet3D is ViTDet3D
    assert ls_backbones.SimpleFeaturePyramid3D is SimpleFeaturePyramid3D
    model = ls_backbones.create_backbone("vitdet3d", **TINY)
    assert isinstance(model, ViTDet3D)
    assert ls_backbones.get_backbone_builder("vitdet3d_s") is vitdet3d_s


def test_parameter_names_follow_detectron2() -> None:
    model = tiny(use_rel_pos=True, residual_block_indexes=(1,))
    keys = set(model.state_dict())
    expected = {
        "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight", "blocks.0.attn.rel_pos_z", "blocks.0.attn.rel_pos_y",
        "blocks.0.attn.rel_pos_x", "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.bias",
    } | {f"blocks.1.residual.{m}.weight" for m in
         ("conv1", "norm1", "conv2", "norm2", "conv3", "norm3")}
    assert expected <= keys
    assert model.patch_embed.proj.kernel_size == model.patch_embed.proj.stride == (4, 4, 4)


# ----------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 16, 16, 16), r"5-D input .* shape \(1, 16, 16, 16\)"),
        ((1, 2, 16, 16, 16), r"in_channels=1 .* 2 channels"),
        ((1, 1, 16, 18, 16), r"\(16, 18, 16\) .* size_divisibility \(z, y, x\)=\(4, 4, 4\)"),
    ],
)
def test_bad_inputs(shape, match) -> None:
    model = tiny()
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))
    sfp = SimpleFeaturePyramid3D(model, out_channels=8)
    with pytest.raises(ValueError, match="SimpleFeaturePyramid3D"):
        sfp(torch.randn(*shape))


def test_sfp_input_must_meet_its_own_divisibility() -> None:
    sfp = SimpleFeaturePyramid3D(tiny(), out_channels=8)  # p6 at stride 4 / 0.5 * 2 = 16
    assert sfp.size_divisibility == (16, 16, 16)
    with pytest.raises(ValueError, match=r"size_divisibility \(z, y, x\)=\(16, 16, 16\)"):
        sfp(torch.randn(1, 1, 8, 16, 16))  # fine for the net, not for p5 / p6


@pytest.mark.parametrize(
    ("scale_factors", "match"),
    [
        ((3.0,), r"scale_factors\[0\]=3.0 must be a power of two"),
        ((2.0, (1, 3, 3)), r"scale_factors\[1\]=\(1, 3, 3\) must be a power of two"),
        ((0,), "power of two"),
        ((-2.0,), "power of two"),
        (((2, 2),), "power of two"),
        ((float("nan"),), "power of two"),
        (((8, 2, 2),), "fractional stride"),  # net z stride 4 / 8
        ((2, (1, 2, 2)), "unique"),  # both give y stride 2 -> p1
        ((1, 2), "finest to coarsest"),
        ((), "at least one"),
    ],
)
def test_sfp_bad_scale_factors(scale_factors, match) -> None:
    with pytest.raises(ValueError, match=match):
        SimpleFeaturePyramid3D(tiny(), scale_factors=scale_factors)


def test_sfp_other_construction_errors() -> None:
    net = tiny()
    with pytest.raises(ValueError, match=r"in_feature='p5' is not an output .* \['last_feat'\]"):
        SimpleFeaturePyramid3D(net, in_feature="p5")
    with pytest.raises(ValueError, match="halved"):
        SimpleFeaturePyramid3D(tiny(embed_dim=6, num_heads=2), scale_factors=(4,))
    with pytest.raises(ValueError, match="power-of-two in-plane"):
        SimpleFeaturePyramid3D(tiny(patch_size=(4, 6, 4), pretrain_img_size=(16, 24, 16)),
                               scale_factors=(1,))
    with pytest.raises(ValueError, match="unknown norm"):
        SimpleFeaturePyramid3D(net, norm="bogus")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_size": 2, "window_block_indexes": (2,)}, r"window_block_indexes .*depth=2.*2"),
        ({"window_size": 2, "window_block_indexes": (-1,)}, "window_block_indexes"),
        ({"residual_block_indexes": (5,)}, "residual_block_indexes"),
        ({"window_size": (0, 2, 2), "window_block_indexes": (0,)}, "positive on every axis"),
        ({"window_size": 2}, "no effect without window_block_indexes"),
        ({"window_block_indexes": (0,)}, "need a window_size > 0"),
        ({"num_heads": 3}, "divisible by num_heads=3|multiple of num_heads=3"),
        ({"patch_size": (4, 0, 4)}, "patch_size must be positive"),
        ({"patch_size": (4, 4)}, "patch_size"),
        ({"pretrain_img_size": 2}, "pretrain_img_size=.* smaller than patch_size"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
        ({"depth": 0}, "depth"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_vitdet_construction_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        ViTDet3D(**{**TINY, **kwargs})
