"""FPN3D, LastLevelMaxPool3D and BackboneWithFPN3D: names, strides, divisibility, top-down
nearest upsampling against a direct computation, and torchvision's parameter names."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from ls_backbones import Backbone3D, FeatureSpec
from ls_backbones.fpn import FPN3D, BackboneWithFPN3D, LastLevelMaxPool3D, extra_level_name
from ls_backbones.resnet import ResNet3D

Z_KEEP = {
    "stem_stride": (1, 2, 2),
    "pool_stride": (1, 2, 2),
    "stage_strides": (1, (1, 2, 2), (1, 2, 2), (1, 2, 2)),
}


def _nearest(x: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Nearest-neighbour resize written out: output index i reads input index floor(i * in / out)."""
    for axis, out in zip((2, 3, 4), size, strict=True):
        n = x.shape[axis]
        index = torch.div(torch.arange(out) * n, out, rounding_mode="floor")
        x = x.index_select(axis, index)
    return x


# ------------------------------------------------------------------------------ FPN3D


def test_top_down_on_hand_checked_case():
    """Identity laterals and output convs: each level is its input plus its upper level repeated."""
    fpn = FPN3D([1, 1], out_channels=1)
    with torch.no_grad():
        for block in fpn.inner_blocks:
            block[0].weight.fill_(1.0)
        for block in fpn.layer_blocks:
            block[0].weight.zero_()
            block[0].weight[0, 0, 1, 1, 1] = 1.0
    coarse = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 1, 2, 2)
    fine = torch.zeros(1, 1, 2, 4, 4)
    fine[0, 0, 1, 3, 0] = 10.0
    out = fpn(OrderedDict([("a", fine), ("b", coarse)]))
    expected = torch.tensor(
        [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]
    )
    expected = expected.expand(2, 4, 4).clone()
    expected[1, 3, 0] += 10.0
    torch.testing.assert_close(out["a"][0, 0], expected)
    torch.testing.assert_close(out["b"], coarse)
    assert list(out) == ["a", "b"]


def test_matches_direct_computation_with_uneven_sizes():
    torch.manual_seed(0)
    channels, sizes = [3, 5, 4], [(3, 9, 7), (2, 5, 4), (1, 2, 3)]
    fpn = FPN3D(channels, out_channels=6)
    with torch.no_grad():
        for m in fpn.modules():
            if isinstance(m, nn.Conv3d):
                m.bias.normal_()
    feats = OrderedDict(
        (f"c{i}", torch.randn(2, c, *s)) for i, (c, s) in enumerate(zip(channels, sizes, strict=True))
    )
    with torch.no_grad():
        out = fpn(feats)
        xs = list(feats.values())
        inner = [F.conv3d(x, b[0].weight, b[0].bias) for x, b in zip(xs, fpn.inner_blocks, strict=True)]
        merged = [None, None, inner[2]]
        for i in (1, 0):
            merged[i] = inner[i] + _nearest(merged[i + 1], sizes[i])
        expected = [
            F.conv3d(m, b[0].weight, b[0].bias, padding=1)
            for m, b in zip(merged, fpn.layer_blocks, strict=True)
        ]
    assert list(out) == ["c0", "c1", "c2"]
    for got, want, s in zip(out.values(), expected, sizes, strict=True):
        assert got.shape == (2, 6, *s)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_parameter_names_match_torchvision():
    for norm, norm_layer in [(None, None), ("batchnorm", nn.BatchNorm2d)]:
        ours = FPN3D([8, 16, 32], 4, norm=norm).state_dict()
        theirs = FeaturePyramidNetwork([8, 16, 32], 4, norm_layer=norm_layer).state_dict()
        assert list(ours) == list(theirs)
        for k in theirs:
            assert ours[k].dim() == theirs[k].dim() + (1 if theirs[k].dim() == 4 else 0), k
    assert "inner_blocks.0.0.bias" not in FPN3D([8], 4, norm="groupnorm").state_dict()


def test_init_like_torchvision():
    fpn = FPN3D([64, 32], 16)
    for m in fpn.modules():
        if isinstance(m, nn.Conv3d):
            bound = (3.0 / (m.in_channels * m.weight[0, 0].numel())) ** 0.5  # kaiming_uniform_(a=1)
            assert 0.9 * bound < m.weight.abs().max().item() <= bound
            assert not m.bias.any()


def test_fpn_input_errors():
    fpn = FPN3D([4, 8], 4)
    with pytest.raises(ValueError, match=r"built for 2 levels.*\['a'\]"):
        fpn({"a": torch.randn(1, 4, 2, 2, 2)})
    with pytest.raises(ValueError, match=r"'b' has shape \(1, 7, 1, 1, 1\).*\(B, 8, D, H, W\)"):
        fpn({"a": torch.randn(1, 4, 2, 2, 2), "b": torch.randn(1, 7, 1, 1, 1)})
    with pytest.raises(ValueError, match="in_channels_list"):
        FPN3D([4, 0], 4)


# -------------------------------------------------------------------- extra max-pool


def test_last_level_max_pool():
    pool = LastLevelMaxPool3D((1, 2, 3))
    x = torch.randn(1, 2, 3, 4, 6)
    results, names = pool([torch.randn(1, 2, 6, 8, 12), x], [], ["p4", "p5"])
    assert names == ["p4", "p5", "p6"]
    assert torch.equal(results[-1], x[:, :, ::1, ::2, ::3])
    assert LastLevelMaxPool3D().stride == (2, 2, 2)
    assert extra_level_name("p5") == "p6" and extra_level_name("p12") == "p13"
    assert extra_level_name("3") == "pool" and extra_level_name("res5") == "pool"
    assert LastLevelMaxPool3D(name="top").level_name("p5") == "top"
    with pytest.raises(ValueError, match="stride"):
        LastLevelMaxPool3D((1, 2))


# ----------------------------------------------------------------- BackboneWithFPN3D


def test_backbone_with_fpn_z_keeping_contract(check_contract):
    body = ResNet3D(depth=18, **Z_KEEP)
    net = BackboneWithFPN3D(body, out_channels=16, extra_pool_stride=(1, 2, 2)).eval()
    spec = net.output_shape()
    assert list(spec) == ["p2", "p3", "p4", "p5", "p6"]
    assert [s.stride for s in spec.values()] == [(1, 4, 4), (1, 8, 8), (1, 16, 16), (1, 32, 32), (1, 64, 64)]
    assert all(s.channels == 16 for s in spec.values())
    assert net.size_divisibility == (1, 64, 64)
    assert net.out_channels == 16 and net.in_channels == 1
    assert net.body is body and isinstance(net.fpn, FPN3D)
    out = check_contract(net, (1, 1, 2, 64, 128))
    torch.testing.assert_close(out["p6"], out["p5"][:, :, :, ::2, ::2])


def test_backbone_with_fpn_subset_and_isotropic(check_contract):
    body = ResNet3D(depth=18, out_features=("p2", "p3", "p4"))
    net = BackboneWithFPN3D(body, in_features=("p3", "p4"), out_channels=8).eval()
    assert list(net.output_shape()) == ["p3", "p4", "p5"]
    assert net.output_shape()["p5"] == FeatureSpec(8, (32, 32, 32))
    assert net.size_divisibility == (32, 32, 32)  # lcm(body 16, extra 32)
    assert net.fpn.in_channels_list == [128, 256]
    check_contract(net, (2, 1, 32, 32, 64))


def test_backbone_with_fpn_divisibility_is_lcm(check_contract):
    body = ResNet3D(depth=18, out_features=("p2", "p3"), stem_stride=(1, 2, 2), pool_stride=(1, 2, 2),
                    stage_strides=(1, (1, 2, 2), 2, 2))
    assert body.size_divisibility == (1, 8, 8)
    net = BackboneWithFPN3D(body, out_channels=8, extra_pool_stride=3).eval()
    assert net.output_shape()["p4"].stride == (3, 24, 24)
    assert net.size_divisibility == (3, 24, 24)
    check_contract(net, (1, 1, 6, 48, 24))


def test_backbone_with_fpn_without_extra_level(check_contract):
    body = ResNet3D(depth=18, out_features=("p2", "p3"))
    net = BackboneWithFPN3D(body, out_channels=8, extra_pool=False, norm="groupnorm").eval()
    assert list(net.output_shape()) == ["p2", "p3"]
    assert net.size_divisibility == body.size_divisibility == (8, 8, 8)
    assert isinstance(net.fpn.inner_blocks[0][1], nn.GroupNorm)
    check_contract(net, (1, 1, 8, 16, 24))


class _TwoLevelBody(Backbone3D):
    """A non-ResNet body with non-``pN`` names: anything honouring the contract is accepted."""

    def __init__(self) -> None:
        super().__init__(in_channels=2)
        self.c1 = nn.Conv3d(2, 3, 2, stride=2)
        self.c2 = nn.Conv3d(3, 5, (1, 2, 2), stride=(1, 2, 2))

    def output_shape(self) -> OrderedDict[str, FeatureSpec]:
        return OrderedDict(res1=FeatureSpec(3, (2, 2, 2)), res2=FeatureSpec(5, (2, 4, 4)))

    @property
    def size_divisibility(self) -> tuple[int, int, int]:
        return (2, 4, 4)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        self.check_input(x)
        a = self.c1(x)
        return OrderedDict(res1=a, res2=self.c2(a))


def test_backbone_with_fpn_any_body(check_contract):
    net = BackboneWithFPN3D(_TwoLevelBody(), out_channels=4)
    assert list(net.output_shape()) == ["res1", "res2", "pool"]
    assert net.output_shape()["pool"].stride == (4, 8, 8)
    assert net.size_divisibility == (4, 8, 8)
    check_contract(net, (2, 2, 4, 8, 16))


def test_backbone_with_fpn_errors():
    body = _TwoLevelBody()
    msg = r"subset of the body's outputs \['res1', 'res2'\]; unknown: \['p3'\]"
    with pytest.raises(ValueError, match=msg):
        BackboneWithFPN3D(body, in_features=("p3",))
    with pytest.raises(ValueError, match="order"):
        BackboneWithFPN3D(body, in_features=("res2", "res1"))
    with pytest.raises(ValueError, match="non-empty"):
        BackboneWithFPN3D(body, in_features=())
    with pytest.raises(TypeError, match="output_shape"):
        BackboneWithFPN3D(nn.Conv3d(1, 1, 1))
    net = BackboneWithFPN3D(body, out_channels=4)
    with pytest.raises(ValueError, match=r"\(4, 8, 8\)"):
        net(torch.randn(1, 2, 2, 8, 8))


# ------------------------------------------------------------------ locality (tiled prediction)


def _tile_features(norm: str) -> tuple[Tensor, Tensor]:
    """p2 of a ResNet3D-18 (layer1-2) + FPN over two tiles of one volume, 320 voxels wide in x and
    shifted by 160; tile B alone holds a bright region. Returns both tiles' p2 over the middle 16
    voxels of their common x range (72-88 voxels from every cut face of either tile)."""
    torch.manual_seed(0)
    body = ResNet3D(depth=18, out_features=["p2", "p3"], norm=norm, num_groups=8,
                    stem_kernel_size=(3, 7, 7), **Z_KEEP)  # fmt: skip
    model = BackboneWithFPN3D(body, out_channels=8).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):  # statistics that are not the identity
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        volume = torch.randn(1, 1, 8, 32, 480)
        volume[..., 320:] += 3.0
        a = model(volume[..., 0:320])["p2"]  # p2: stride 4 in x
        b = model(volume[..., 160:480])["p2"]
    return a[..., 58:62], b[..., 18:22]  # x 232..248 of the volume in both


def test_batchnorm_features_depend_only_on_the_receptive_field():
    """In eval mode a BatchNorm backbone is local: two tiles give the same features wherever the
    receptive field lies inside both, so a tiled prediction does not depend on the tile grid. A
    GroupNorm backbone normalises with statistics of the whole tile: the same voxels differ with
    what else the tile holds (why the quickstart's GroupNorm model disagrees with itself on two
    tile grids far from any cut face; see ``benchmarks/tile_grids.py``)."""
    a, b = _tile_features("batchnorm")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    a, b = _tile_features("groupnorm")
    assert (a - b).abs().max() > 0.05 * a.abs().max()
