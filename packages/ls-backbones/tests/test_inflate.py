"""2-D -> 3-D inflation: inflated ResNet3D / FPN3D reproduce torchvision's 2-D networks on
depth-1 input, "mean" inflation reproduces a 2-D conv on z-constant input, input-channel
adaptation, and every error path (with the target left untouched)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ls_backbones.fpn import FPN3D, BackboneWithFPN3D, LastLevelMaxPool3D
from ls_backbones.inflate import inflate_conv_weight, inflate_fpn, inflate_resnet
from ls_backbones.resnet import ResNet3D

Z_KEEP = {  # every z stride 1: a depth-1 input stays depth 1
    "pool_stride": (1, 2, 2),
    "stem_stride": (1, 2, 2),
    "stage_strides": (1, (1, 2, 2), (1, 2, 2), (1, 2, 2)),
}
TOL = 1e-4


def _randomise_bn(net: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so BN copying is really tested."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
    return net


def _tv_resnet(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return _randomise_bn(getattr(torchvision.models, name)(**kwargs)).eval()


def _tv_stages(net: nn.Module, x: Tensor, stages: int = 4) -> list[Tensor]:
    """torchvision ResNet layer1..layer{stages} outputs."""
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = []
    for i in range(1, stages + 1):
        h = getattr(net, f"layer{i}")(h)
        out.append(h)
    return out


def _max_diff(a: Tensor, b: Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# -------------------------------------------------------------------- single kernels


def test_inflate_conv_weight_centre_and_mean():
    w = torch.randn(4, 3, 3, 5)
    c = inflate_conv_weight(w, 3)
    assert c.shape == (4, 3, 3, 3, 5)
    assert torch.equal(c[:, :, 1], w) and not c[:, :, 0].any() and not c[:, :, 2].any()
    even = inflate_conv_weight(w, 4, mode="centre")
    assert torch.equal(even[:, :, 2], w) and not even[:, :, [0, 1, 3]].any()
    assert torch.equal(inflate_conv_weight(w, 1)[:, :, 0], w)
    m = inflate_conv_weight(w, 5, mode="mean")
    assert m.shape == (4, 3, 5, 3, 5)
    torch.testing.assert_close(m.sum(dim=2), w)
    assert all(torch.allclose(m[:, :, z], w / 5) for z in range(5))


def test_inflate_conv_weight_errors():
    with pytest.raises(ValueError, match="choose one of centre, mean"):
        inflate_conv_weight(torch.randn(1, 1, 3, 3), 3, mode="middle")
    with pytest.raises(ValueError, match=r"\(O, I, kh, kw\), got shape \(1, 1, 3\)"):
        inflate_conv_weight(torch.randn(1, 1, 3), 3)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        inflate_conv_weight(torch.randn(1, 1, 3, 3), 0)


def test_mean_mode_conv_equals_2d_conv_on_z_constant_input():
    torch.manual_seed(0)
    conv2d = nn.Conv2d(3, 4, 3, padding=1)
    conv3d = nn.Conv3d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv3d.weight.copy_(inflate_conv_weight(conv2d.weight, 3, mode="mean"))
        conv3d.bias.copy_(conv2d.bias)
        x = torch.randn(1, 3, 8, 9)
        y2 = conv2d(x)
        y3 = conv3d(x[:, :, None].repeat(1, 1, 5, 1, 1))
    for z in range(1, 4):  # away from the zero-padded z borders
        torch.testing.assert_close(y3[:, :, z], y2, rtol=1e-5, atol=1e-5)
    assert _max_diff(y3[:, :, 0], y2) > 1e-2  # the borders do differ: the test looks at the right slices


@pytest.mark.parametrize("depth", [2, 3])
def test_centre_mode_conv_equals_2d_conv_on_depth_one_input(depth):
    torch.manual_seed(0)
    conv2d = nn.Conv2d(3, 4, 3, padding=1)
    conv3d = nn.Conv3d(3, 4, (depth, 3, 3), padding=(depth // 2, 1, 1))
    with torch.no_grad():
        conv3d.weight.copy_(inflate_conv_weight(conv2d.weight, depth))
        conv3d.bias.copy_(conv2d.bias)
        x = torch.randn(1, 3, 8, 9)
        # the output voxel z=0 is aligned with the input slice z=0 (for even depth too)
        torch.testing.assert_close(conv3d(x[:, :, None])[:, :, 0], conv2d(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------- whole networks


@pytest.mark.parametrize(
    ("name", "depth", "stem_z"), [("resnet18", 18, 7), ("resnet18", 18, 1), ("resnet50", 50, 3)]
)
@pytest.mark.slow(seconds=7)
def test_inflated_resnet_reproduces_torchvision(name, depth, stem_z):
    src = _tv_resnet(name).double()
    target = ResNet3D(depth=depth, in_channels=3, stem_kernel_size=(stem_z, 7, 7), **Z_KEEP)
    assert inflate_resnet(src, target.double().eval()) is target
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        out = target(x[:, :, None])
        ref = _tv_stages(src, x)
    for name_3d, r in zip(["p2", "p3", "p4", "p5"], ref, strict=True):
        assert out[name_3d].shape[2] == 1
        assert _max_diff(out[name_3d][:, :, 0], r) <= TOL, name_3d


def test_inflated_resnet18_reproduces_torchvision_in_float32():
    """The default dtype too: float32 ResNet-18 features agree to 1e-4 (ResNet-50's layer4 reaches
    magnitudes near 200 in float32, where 1e-4 is below float32 resolution; it is checked in float64)."""
    src = _tv_resnet("resnet18")
    target = inflate_resnet(src, ResNet3D(depth=18, in_channels=3, **Z_KEEP).eval())
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = target(x[:, :, None])
        ref = _tv_stages(src, x)
    for name_3d, r in zip(["p2", "p3", "p4", "p5"], ref, strict=True):
        assert _max_diff(out[name_3d][:, :, 0], r) <= TOL, name_3d


def test_inflated_resnet_from_state_dict_mean_mode_on_z_constant_input():
    """"mean" inflation of a whole net: a z-constant volume gives the 2-D features in the middle."""
    src = _tv_resnet("resnet18").double()
    target = ResNet3D(depth=18, in_channels=3, out_features=("p2",), stem_kernel_size=(3, 7, 7), **Z_KEEP)
    inflate_resnet(src.state_dict(), target.double().eval(), mode="mean")
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = target(x[:, :, None].repeat(1, 1, 13, 1, 1))["p2"]
        ref = _tv_stages(src, x, stages=1)[0]
    # the stem conv, the max-pool and layer1's four 3x3x3 convs each reach one slice further
    # into the zero-padded z border: slices 0..5 and 7..12 differ, slice 6 does not
    assert _max_diff(out[:, :, 6], ref) <= TOL
    assert _max_diff(out[:, :, 0], ref) > 1e-2


def test_sum_input_channels_matches_grey_rgb_image():
    src = _tv_resnet("resnet18").double()
    target = ResNet3D(
        depth=18, in_channels=1, out_features=("p2", "p3"), stem_kernel_size=(1, 7, 7), **Z_KEEP
    )
    inflate_resnet(src, target.double().eval(), input_channels="sum")
    grey = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        out = target(grey[:, :, None])
        ref = _tv_stages(src, grey.expand(1, 3, 64, 64), stages=2)
    assert _max_diff(out["p2"][:, :, 0], ref[0]) <= TOL
    assert _max_diff(out["p3"][:, :, 0], ref[1]) <= TOL


@pytest.mark.parametrize("channels", [6, 4])  # whole and partial cycles of the 3 RGB kernels
def test_repeat_input_channels_matches_tiled_input(channels: int):
    src = _tv_resnet("resnet18").double()
    target = ResNet3D(depth=18, in_channels=channels, out_features=("p2",), stem_kernel_size=(1, 7, 7),
                      **Z_KEEP)
    inflate_resnet(src, target.double().eval(), input_channels="repeat")
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = target(x[:, torch.arange(channels) % 3][:, :, None])["p2"]
        ref = _tv_stages(src, x, stages=1)[0]
    assert _max_diff(out[:, :, 0], ref) <= TOL


def test_mean_input_channels_weights():
    src = _tv_resnet("resnet18")
    target = ResNet3D(depth=18, in_channels=2, out_features=("p2",))
    inflate_resnet(src, target, input_channels="mean")
    expected = src.conv1.weight.mean(dim=1, keepdim=True)
    for c in range(2):
        torch.testing.assert_close(target.conv1.weight[:, c, 3], expected[:, 0])


def test_frozen_batchnorm_source_and_target():
    src = _tv_resnet("resnet18", norm_layer=FrozenBatchNorm2d).double()
    target = ResNet3D(depth=18, in_channels=3, norm="frozenbn", out_features=("p2", "p3"), **Z_KEEP)
    inflate_resnet(src, target.double())
    bn_target = ResNet3D(depth=18, in_channels=3, out_features=("p2",), **Z_KEEP)
    inflate_resnet(src, bn_target.double().eval())  # no num_batches_tracked in the source: kept
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = _tv_stages(src, x, stages=2)
        out = target(x[:, :, None])
        assert _max_diff(bn_target(x[:, :, None])["p2"][:, :, 0], ref[0]) <= TOL
    assert _max_diff(out["p2"][:, :, 0], ref[0]) <= TOL
    assert _max_diff(out["p3"][:, :, 0], ref[1]) <= TOL


def test_inflated_backbone_with_fpn_reproduces_torchvision():
    torch.manual_seed(0)
    layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    src = BackboneWithFPN(_tv_resnet("resnet18"), layers, [64, 128, 256, 512], 32).double().eval()
    assert isinstance(src.fpn.extra_blocks, LastLevelMaxPool)
    body = ResNet3D(depth=18, in_channels=3, **Z_KEEP)
    target = BackboneWithFPN3D(body, out_channels=32, extra_pool_stride=(1, 2, 2)).double().eval()
    inflate_fpn(src, target)
    x = torch.randn(1, 3, 64, 128, dtype=torch.float64)
    with torch.no_grad():
        ref = src(x)
        out = target(x[:, :, None])
    assert list(ref) == ["0", "1", "2", "3", "pool"]
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    for r, o in zip(ref.values(), out.values(), strict=True):
        assert _max_diff(o[:, :, 0], r) <= TOL


def test_inflated_fpn_with_norm_reproduces_torchvision():
    torch.manual_seed(0)
    src = FeaturePyramidNetwork([8, 16, 32], 12, extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d)
    src = _randomise_bn(src).double().eval()
    target = FPN3D([8, 16, 32], 12, LastLevelMaxPool3D((1, 2, 2)), norm="batchnorm").double().eval()
    inflate_fpn(src, target)
    sizes = [(15, 13), (8, 7), (3, 4)]  # uneven: exercises nearest upsampling to odd sizes
    feats = OrderedDict(
        (f"p{i + 2}", torch.randn(2, c, *s, dtype=torch.float64))
        for i, (c, s) in enumerate(zip([8, 16, 32], sizes, strict=True))
    )
    with torch.no_grad():
        ref = src(feats)
        out = target(OrderedDict((k, v[:, :, None]) for k, v in feats.items()))
    assert list(ref) == ["p2", "p3", "p4", "pool"] and list(out) == ["p2", "p3", "p4", "p5"]
    for r, o in zip(ref.values(), out.values(), strict=True):
        assert _max_diff(o[:, :, 0], r) <= TOL


def test_legacy_fpn_keys_are_accepted():
    src = FeaturePyramidNetwork([4, 8], 6)
    legacy = {k.replace(".0.", "."): v for k, v in src.state_dict().items()}
    assert "inner_blocks.0.weight" in legacy
    target = inflate_fpn(legacy, FPN3D([4, 8], 6))
    torch.testing.assert_close(target.layer_blocks[1][0].weight[:, :, 1], src.layer_blocks[1][0].weight)


# ------------------------------------------------------------------------ error paths


def _snapshot(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def _unchanged(net: nn.Module, snap: dict[str, Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in net.state_dict().items())


def test_input_channel_mismatch_errors():
    src = _tv_resnet("resnet18")
    target = ResNet3D(depth=18, in_channels=1, out_features=("p2",))
    snap = _snapshot(target)
    msg = r"conv1\.weight.*\(64, 3, 7, 7\).*\(64, 1, 7, 7, 7\).*input_channels='sum'"
    with pytest.raises(ValueError, match=msg):
        inflate_resnet(src, target)
    with pytest.raises(ValueError, match=r"'sum'.*expects 2"):
        inflate_resnet(src, ResNet3D(depth=18, in_channels=2, out_features=("p2",)), input_channels="sum")
    with pytest.raises(ValueError, match="choose one of error, sum, mean, repeat"):
        inflate_resnet(src, target, input_channels="average")
    with pytest.raises(ValueError, match="choose one of centre, mean"):
        inflate_resnet(src, target, mode="edge")
    assert _unchanged(target, snap)


def test_architecture_mismatch_errors_leave_target_untouched():
    target = ResNet3D(depth=18, in_channels=3)
    snap = _snapshot(target)
    with torch.device("meta"):
        r50 = torchvision.models.resnet50().state_dict()
        r34 = torchvision.models.resnet34().state_dict()
    msg = r"'layer1\.0\.conv1\.weight'.*\(64, 64, 1, 1\).*\(64, 64, 3, 3, 3\)"
    with pytest.raises(ValueError, match=msg):
        inflate_resnet(r50, target)
    with pytest.raises(ValueError, match=r"no counterpart.*'layer1\.2\.conv1\.weight'"):
        inflate_resnet(r34, target)
    src = _tv_resnet("resnet18").state_dict()
    del src["layer3.1.bn2.running_var"]
    with pytest.raises(ValueError, match=r"'layer3\.1\.bn2\.running_var' \(shape \(256,\)\) is missing"):
        inflate_resnet(src, target)
    narrow = ResNet3D(depth=18, in_channels=3, stem_out_channels=32, out_features=("p2",))
    with pytest.raises(ValueError, match=r"'conv1\.weight'.*\(64, 3, 7, 7\).*\(32, 3, 7, 7, 7\)"):
        inflate_resnet(_tv_resnet("resnet18"), narrow)
    gn = ResNet3D(depth=18, in_channels=3, norm="groupnorm", out_features=("p2",))
    with pytest.raises(ValueError, match=r"'bn1\.running_mean'"):
        inflate_resnet(_tv_resnet("resnet18"), gn)
    with pytest.raises(TypeError, match="state dict"):
        inflate_resnet([1, 2], target)
    with pytest.raises(TypeError, match="ResNet3D"):
        inflate_resnet(_tv_resnet("resnet18"), FPN3D([4], 4))
    assert _unchanged(target, snap)


def test_fpn_error_paths():
    src = FeaturePyramidNetwork([4, 8], 6)
    target = FPN3D([4, 8, 16], 6)
    with pytest.raises(ValueError, match=r"'inner_blocks\.2\.0\.weight'.*missing"):
        inflate_fpn(src, target)
    with pytest.raises(ValueError, match=r"no counterpart.*'inner_blocks\.1\.0\.weight'"):
        inflate_fpn(src, FPN3D([4], 6))
    with pytest.raises(ValueError, match=r"'inner_blocks\.1\.0\.weight'.*\(6, 8, 1, 1\).*\(6, 16, 1, 1, 1\)"):
        inflate_fpn(src, FPN3D([4, 16], 6))
    with pytest.raises(ValueError, match=r"'body\.\*' and 'fpn\.\*'"):
        inflate_fpn(src, BackboneWithFPN3D(ResNet3D(depth=18, out_features=("p2", "p3")), out_channels=6))
    with pytest.raises(TypeError, match="FPN3D or a BackboneWithFPN3D"):
        inflate_fpn(src, ResNet3D(depth=18, out_features=("p2",)))
    layers = {"layer1": "0", "layer2": "1"}
    bwf = BackboneWithFPN(_tv_resnet("resnet18"), layers, [64, 128], 8)
    deep_body = ResNet3D(depth=18, in_channels=3, out_features=("p2", "p3", "p4"))
    deep = BackboneWithFPN3D(deep_body, out_channels=8)
    snap = _snapshot(deep)
    with pytest.raises(ValueError, match=r"'body\.layer3\.0\.conv1\.weight'.*missing"):
        inflate_fpn(bwf, deep)
    assert _unchanged(deep, snap)
    ok = BackboneWithFPN3D(ResNet3D(depth=18, in_channels=1, out_features=("p2", "p3")), out_channels=8)
    with pytest.raises(ValueError, match=r"body\.conv1\.weight.*input_channels"):
        inflate_fpn(bwf, ok)
    inflate_fpn(bwf, ok, input_channels="sum")
    torch.testing.assert_close(ok.body.conv1.weight[:, 0, 3], bwf.body.conv1.weight.sum(dim=1))
