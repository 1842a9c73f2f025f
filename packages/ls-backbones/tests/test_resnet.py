"""ResNet3D: the backbone contract, configuration options, freezing, norms, and the layout of
torchvision's 2-D ResNet (names, block counts, shapes)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torchvision
from torch import nn

from ls_backbones import FrozenBatchNorm3d, to_triple
from ls_backbones.resnet import (
    BasicBlock3D,
    Bottleneck3D,
    ResNet3D,
    resnet3d_18,
    resnet3d_34,
    resnet3d_50,
    resnet3d_101,
    resnet3d_152,
)

DEPTHS = (18, 34, 50, 101, 152)
# blocks per stage and block kind of torchvision's ResNets (written out, not imported)
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
ANISO = {
    "stem_kernel_size": (3, 7, 7),
    "stem_stride": (1, 2, 2),
    "stage_strides": (1, (1, 2, 2), 2, 2),
}


@functools.cache
def default_net(depth: int) -> ResNet3D:
    """One default ResNet3D per depth, shared by the tests (the deep ones take seconds to build)."""
    torch.manual_seed(depth)
    return ResNet3D(depth=depth).eval()


def _stage(name: str) -> int:
    """0 for the stem's parameters, k for layer{k}'s."""
    return int(name[len("layer")]) if name.startswith("layer") else 0


def _randomise_bn(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("depth", DEPTHS)
def test_contract_every_depth(depth, check_contract):
    net = default_net(depth)
    e = 1 if depth < 50 else 4
    spec = net.output_shape()
    assert list(spec) == ["p2", "p3", "p4", "p5"]
    assert [s.channels for s in spec.values()] == [64 * e, 128 * e, 256 * e, 512 * e]
    assert [s.stride for s in spec.values()] == [(4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32)]
    assert net.size_divisibility == (32, 32, 32)
    shapes = [(2, 1, 32, 32, 32), (1, 1, 32, 64, 96)] if depth in (18, 50) else [(1, 1, 32, 64, 32)]
    for shape in shapes:
        check_contract(net, shape)


@pytest.mark.parametrize("depth", [18, 50])
def test_anisotropic_contract(depth, check_contract):
    net = ResNet3D(depth=depth, in_channels=2, **ANISO).eval()
    assert net.conv1.kernel_size == (3, 7, 7)
    assert net.conv1.padding == (1, 3, 3)
    assert net.conv1.stride == (1, 2, 2)
    strides = [s.stride for s in net.output_shape().values()]
    assert strides == [(2, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32)]
    assert net.size_divisibility == (8, 32, 32)
    check_contract(net, (1, 2, 16, 64, 32))


def test_z_preserving_config_accepts_any_depth(check_contract):
    net = ResNet3D(
        depth=18, stem_kernel_size=(1, 7, 7), stem_stride=(1, 2, 2), pool_stride=(1, 2, 2),
        stage_strides=(1, (1, 2, 2), (1, 2, 2), (1, 2, 2)),
    ).eval()
    assert net.size_divisibility == (1, 32, 32)
    assert net.conv1.padding == (0, 3, 3)
    check_contract(net, (1, 1, 3, 64, 32))


def test_no_stem_pool(check_contract):
    net = ResNet3D(depth=18, stem_pool=False, out_features=("p2", "p3")).eval()
    assert isinstance(net.maxpool, nn.Identity)
    assert [s.stride for s in net.output_shape().values()] == [(2, 2, 2), (4, 4, 4)]
    assert net.size_divisibility == (4, 4, 4)
    check_contract(net, (1, 1, 8, 12, 16))


@pytest.mark.parametrize(
    "features", [("p2",), ("p4",), ("p3", "p5"), ("p2", "p3", "p4")]
)
def test_out_features_subset(features, check_contract):
    net = ResNet3D(depth=18, out_features=features).eval()
    deepest = max(int(f[1]) for f in features) - 1
    assert [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(net, n)] == [
        f"layer{i}" for i in range(1, deepest + 1)
    ]
    assert list(net.output_shape()) == list(features)
    assert net.out_features == list(features)
    assert net.size_divisibility == (2 ** (deepest + 1),) * 3
    check_contract(net, (1, 1, 32, 64, 32))


def test_subset_outputs_equal_full_network_outputs():
    torch.manual_seed(0)
    full = ResNet3D(depth=18, out_features=("p2", "p3", "p4")).eval()
    sub = ResNet3D(depth=18, out_features=("p3",)).eval()
    result = sub.load_state_dict(full.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(k.startswith("layer3.") for k in result.unexpected_keys)
    x = torch.randn(1, 1, 16, 32, 16)
    with torch.no_grad():
        a, b = full(x), sub(x)
    torch.testing.assert_close(b["p3"], a["p3"])


def test_train_mode_backward():
    net = ResNet3D(depth=18, out_features=("p2", "p3")).train()
    out = net(torch.randn(2, 1, 16, 16, 16))
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# ----------------------------------------------------------------- torchvision layout


def _expected_3d_shapes(tv: nn.Module, in_channels: int) -> dict[str, tuple[int, ...]]:
    """torchvision's state-dict shapes with each k x k conv kernel made k x k x k."""
    shapes = {}
    for k, v in tv.state_dict().items():
        if k.startswith("fc."):
            continue
        if v.dim() == 4:
            o, i, kh, kw = v.shape
            shapes[k] = (o, in_channels if k == "conv1.weight" else i, kh, kh, kw)
        else:
            shapes[k] = tuple(v.shape)
    return shapes


@pytest.mark.parametrize("depth", DEPTHS)
def test_layout_matches_torchvision(depth):
    with torch.device("meta"):  # shapes only: skip allocating and initialising 2-D weights
        tv = getattr(torchvision.models, f"resnet{depth}")()
    net = default_net(depth)
    expected = _expected_3d_shapes(tv, in_channels=1)
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == expected
    block = BasicBlock3D if depth < 50 else Bottleneck3D
    for i in range(4):
        layer = getattr(net, f"layer{i + 1}")
        assert len(layer) == len(getattr(tv, f"layer{i + 1}")) == BLOCKS[depth][i]
        assert all(isinstance(b, block) for b in layer)
    # parameter count = torchvision's (less fc) with every conv's kernel volume k^2 -> k^3
    n_expected = 0
    for name, _ in tv.named_parameters():
        if name.startswith("fc."):
            continue
        n_expected += math.prod(expected[name])
    assert sum(p.numel() for p in net.parameters()) == n_expected
    # the stride sits on the 3x3x3 conv of the first block (v1.5) and on its downsample
    first = net.layer2[0]
    strided = first.conv2 if depth >= 50 else first.conv1
    assert strided.stride == (2, 2, 2)
    assert first.conv1.stride == (1, 1, 1) or depth < 50
    assert first.downsample[0].stride == (2, 2, 2)


def test_resnext_layout_matches_torchvision():
    with torch.device("meta"):
        tv = torchvision.models.resnext50_32x4d()
    net = ResNet3D(depth=50, in_channels=3, groups=32, width_per_group=4, out_features=("p2", "p3"))
    expected = {
        k: v for k, v in _expected_3d_shapes(tv, 3).items() if not k.startswith(("layer3", "layer4"))
    }
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected
    assert net.layer1[0].conv2.groups == 32


# ------------------------------------------------------------------------ init, norms


def test_kaiming_init_and_zero_init_residual():
    net = ResNet3D(depth=18, out_features=("p4",))
    w = net.layer3[1].conv2.weight  # fan_out = 256 * 27
    assert abs(w.std().item() / math.sqrt(2.0 / (256 * 27)) - 1.0) < 0.05
    assert torch.equal(net.layer1[0].bn2.weight, torch.ones(64))
    zero = ResNet3D(depth=18, zero_init_residual=True, out_features=("p3",))
    assert all(not b.bn2.weight.any() for layer in (zero.layer1, zero.layer2) for b in layer)
    assert all(b.bn1.weight.eq(1).all() for b in zero.layer1)
    zero50 = ResNet3D(depth=50, zero_init_residual=True, out_features=("p2",))
    assert all(not b.bn3.weight.any() and b.bn2.weight.eq(1).all() for b in zero50.layer1)


def test_groupnorm(check_contract):
    net = ResNet3D(depth=18, norm="groupnorm", num_groups=16, out_features=("p2", "p3"))
    norms = [m for n, m in net.named_modules() if n.endswith(("bn1", "bn2", "downsample.1"))]
    assert norms and all(isinstance(m, nn.GroupNorm) and m.num_groups == 16 for m in norms)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    check_contract(net.train(), (1, 1, 16, 16, 16))  # GroupNorm trains with batch 1


def test_callable_norm():
    net = ResNet3D(depth=18, norm=lambda c: nn.GroupNorm(1, c), out_features=("p2",))
    assert isinstance(net.bn1, nn.GroupNorm) and net.bn1.num_groups == 1
    assert isinstance(net.layer1[0].bn2, nn.GroupNorm)


def test_frozenbn_has_no_trainable_norm_and_matches_eval_batchnorm():
    torch.manual_seed(1)
    bn = ResNet3D(depth=18, out_features=("p2", "p3"))
    _randomise_bn(bn)
    frozen = ResNet3D(depth=18, norm="frozenbn", out_features=("p2", "p3"))
    frozen.load_state_dict(bn.state_dict())
    norms = [m for n, m in frozen.named_modules() if n.endswith(("bn1", "bn2", "downsample.1"))]
    assert norms and all(isinstance(m, FrozenBatchNorm3d) for m in norms)
    # the only parameters left are the convolutions'
    assert all(isinstance(m, nn.Conv3d) for m in frozen.modules() if list(m.parameters(recurse=False)))
    conv_params = sum(m.weight.numel() for m in bn.modules() if isinstance(m, nn.Conv3d))
    assert sum(p.numel() for p in frozen.parameters()) == conv_params
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        ref = bn.eval()(x)
        out_train = frozen.train()(x)  # frozen BN ignores batch statistics even in train mode
        out_eval = frozen.eval()(x)
    for k in ref:
        torch.testing.assert_close(out_eval[k], ref[k], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_train[k], ref[k], rtol=1e-5, atol=1e-5)


def test_unknown_norm_raises():
    with pytest.raises(ValueError, match="unknown norm 'batch_norm_typo'"):
        ResNet3D(depth=18, norm="batch_norm_typo")


# --------------------------------------------------------------------------- freezing


@pytest.mark.parametrize("frozen_stages", [-1, 0, 1, 2, 4])
def test_frozen_stages_requires_grad_and_eval(frozen_stages):
    net = ResNet3D(depth=18, frozen_stages=frozen_stages)
    for name, p in net.named_parameters():
        assert p.requires_grad == (_stage(name) > frozen_stages), name
    net.eval().train()
    for name, m in net.named_modules():
        if isinstance(m, nn.BatchNorm3d):
            assert m.training == (_stage(name) > frozen_stages), name
    net.eval()
    assert not any(m.training for m in net.modules())


def test_frozen_stages_keep_statistics_and_get_no_gradient():
    net = ResNet3D(depth=18, frozen_stages=1, out_features=("p2", "p3")).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = net(torch.randn(2, 1, 16, 16, 16))
    (out["p2"].mean() + out["p3"].mean()).backward()
    after = net.state_dict()
    for k in before:
        if "running_mean" in k:
            assert torch.equal(before[k], after[k]) == (_stage(k) <= 1), k
    for name, p in net.named_parameters():
        assert (p.grad is None) == (_stage(name) <= 1), name


def test_frozen_stages_out_of_range():
    with pytest.raises(ValueError, match=r"frozen_stages must be in -1\.\.2"):
        ResNet3D(depth=18, out_features=("p3",), frozen_stages=3)
    with pytest.raises(ValueError, match="frozen_stages"):
        ResNet3D(depth=18, frozen_stages=-2)


# ----------------------------------------------------------------------------- errors


def test_input_errors():
    net = ResNet3D(depth=18, out_features=("p2",))
    with pytest.raises(ValueError, match=r"5-D input.*\(1, 1, 16, 16\)"):
        net(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"in_channels=1.*\(1, 2, 16, 16, 16\).*2 channels"):
        net(torch.randn(1, 2, 16, 16, 16))
    with pytest.raises(ValueError, match=r"\(16, 16, 10\).*\(1, 1, 16, 16, 10\).*\(4, 4, 4\)"):
        net(torch.randn(1, 1, 16, 16, 10))


def test_bad_depth_lists_valid_depths():
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        ResNet3D(depth=42)


@pytest.mark.parametrize(
    ("features", "match"),
    [(("p6",), "unknown: \\['p6'\\]"), (("p4", "p2"), "in order"), ((), "non-empty"),
     (("p2", "p2"), "without repeats"), (("layer1",), "unknown")],
)
def test_bad_out_features(features, match):
    with pytest.raises(ValueError, match=match):
        ResNet3D(depth=18, out_features=features)


def test_bad_strides_and_kernels():
    with pytest.raises(ValueError, match="4 entries"):
        ResNet3D(depth=18, stage_strides=(1, 2, 2))
    with pytest.raises(ValueError, match=r"stage_strides\[1\]"):
        ResNet3D(depth=18, stage_strides=(1, (1, 2), 2, 2))
    with pytest.raises(ValueError, match=r"stem convolution.*axis z"):
        ResNet3D(depth=18, stem_padding=(0, 3, 3))
    with pytest.raises(ValueError, match="stem max-pool"):
        ResNet3D(depth=18, pool_kernel_size=2, pool_stride=2, pool_padding=1)
    with pytest.raises(ValueError, match="groups=1"):
        ResNet3D(depth=18, groups=32, width_per_group=4)


# ---------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    ("builder", "depth"),
    [(resnet3d_18, 18), (resnet3d_34, 34), (resnet3d_50, 50), (resnet3d_101, 101), (resnet3d_152, 152)],
)
def test_presets(builder, depth):
    net = builder(in_channels=2, out_features=("p2",))
    assert isinstance(net, ResNet3D) and net.depth == depth and net.in_channels == 2
    assert len(net.layer1) == BLOCKS[depth][0]
    with pytest.raises(TypeError, match=f"resnet3d_{depth} fixes depth"):
        builder(depth=18)


def test_per_axis_arguments_take_numpy_integers_and_name_bad_values():
    """Config values often come through numpy: np.int64 works; anything else names the argument."""
    import numpy as np

    assert to_triple(np.int64(4), "stem_stride") == (4, 4, 4)
    assert to_triple((np.int64(1), 2, 2.0), "stem_stride") == (1, 2, 2)
    for bad in (True, None, "2", (1, 2), (1.5, 2, 2), (1, True, 2)):
        with pytest.raises(ValueError, match=r"stem_stride must be an integer or a 3-tuple"):
            to_triple(bad, "stem_stride")
