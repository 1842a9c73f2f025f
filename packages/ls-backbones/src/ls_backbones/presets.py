"""Named pyramid presets: a body backbone with FPN3D (ResNet3D, Hiera3D, any registered one)
or ViTDet3D with its Simple Feature Pyramid.

Keyword arguments prefixed ``fpn_`` / ``sfp_`` configure the pyramid; every other keyword
goes to the body (for example ``in_channels``, ``norm``, ``stem_stride``), so each
constructor argument is one config key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ls_backbones.fpn import BackboneWithFPN3D
from ls_backbones.hiera import hiera3d_b, hiera3d_s, hiera3d_t
from ls_backbones.layers import NormSpec
from ls_backbones.registry import create_backbone
from ls_backbones.resnet import resnet3d_18, resnet3d_34, resnet3d_50, resnet3d_101
from ls_backbones.vitdet import SimpleFeaturePyramid3D, vitdet3d_b, vitdet3d_s

__all__ = [
    "fpn3d",
    "hiera3d_b_fpn",
    "hiera3d_s_fpn",
    "hiera3d_t_fpn",
    "resnet3d_18_fpn",
    "resnet3d_34_fpn",
    "resnet3d_50_fpn",
    "resnet3d_101_fpn",
    "vitdet3d_b_sfp",
    "vitdet3d_s_sfp",
]


def fpn3d(
    *,
    body: str,
    body_kwargs: Mapping[str, Any] | None = None,
    in_features: Sequence[str] | None = None,
    out_channels: int = 256,
    extra_pool: bool = True,
    extra_pool_stride: int | Sequence[int] = 2,
    norm: NormSpec = None,
) -> BackboneWithFPN3D:
    """FPN3D over any registered backbone.

    Args:
        body: registry name of the body backbone (built-in or plugin).
        body_kwargs: keyword arguments of the body's builder.
        in_features: body outputs the pyramid is built from (default: all of them).
        out_channels: channels of every pyramid level.
        extra_pool: add a max-pooled level above the last one.
        extra_pool_stride: per-axis stride of that extra level.
        norm: norm after the FPN convolutions (None: plain conv with bias).
    """
    return BackboneWithFPN3D(
        create_backbone(body, **dict(body_kwargs or {})),
        in_features=in_features,
        out_channels=out_channels,
        extra_pool=extra_pool,
        extra_pool_stride=extra_pool_stride,
        norm=norm,
    )


def _fpn_preset(body_builder, name: str, body_doc: str):
    def preset(
        *,
        fpn_in_features: Sequence[str] | None = None,
        fpn_out_channels: int = 256,
        fpn_extra_pool: bool = True,
        fpn_extra_pool_stride: int | Sequence[int] = 2,
        fpn_norm: NormSpec = None,
        **body_kwargs: Any,
    ) -> BackboneWithFPN3D:
        return BackboneWithFPN3D(
            body_builder(**body_kwargs),
            in_features=fpn_in_features,
            out_channels=fpn_out_channels,
            extra_pool=fpn_extra_pool,
            extra_pool_stride=fpn_extra_pool_stride,
            norm=fpn_norm,
        )

    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = (
        f"{body_doc} with FPN3D (256 channels and an extra max-pooled level by default).\n\n"
        "``fpn_*`` keywords configure the pyramid (see :func:`fpn3d`); the others go to the body."
    )
    return preset


resnet3d_18_fpn = _fpn_preset(resnet3d_18, "resnet3d_18_fpn", "ResNet3D-18")
resnet3d_34_fpn = _fpn_preset(resnet3d_34, "resnet3d_34_fpn", "ResNet3D-34")
resnet3d_50_fpn = _fpn_preset(resnet3d_50, "resnet3d_50_fpn", "ResNet3D-50")
resnet3d_101_fpn = _fpn_preset(resnet3d_101, "resnet3d_101_fpn", "ResNet3D-101")
hiera3d_t_fpn = _fpn_preset(hiera3d_t, "hiera3d_t_fpn", "Hiera3D-T")
hiera3d_s_fpn = _fpn_preset(hiera3d_s, "hiera3d_s_fpn", "Hiera3D-S")
hiera3d_b_fpn = _fpn_preset(hiera3d_b, "hiera3d_b_fpn", "Hiera3D-B")


def _sfp_preset(vit_builder, name: str, vit_doc: str):
    def preset(
        *,
        sfp_out_channels: int = 256,
        sfp_scale_factors: Sequence[float | Sequence[float]] = (4.0, 2.0, 1.0, 0.5),
        sfp_top_block: bool = True,
        sfp_norm: NormSpec = "layernorm",
        **vit_kwargs: Any,
    ) -> SimpleFeaturePyramid3D:
        return SimpleFeaturePyramid3D(
            vit_builder(**vit_kwargs),
            out_channels=sfp_out_channels,
            scale_factors=sfp_scale_factors,
            top_block=sfp_top_block,
            norm=sfp_norm,
        )

    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = (
        f"{vit_doc} with the Simple Feature Pyramid (p2..p6, 256 channels by default).\n\n"
        "``sfp_*`` keywords configure the pyramid; the others go to the ViT."
    )
    return preset


vitdet3d_s_sfp = _sfp_preset(vitdet3d_s, "vitdet3d_s_sfp", "ViTDet3D-S")
vitdet3d_b_sfp = _sfp_preset(vitdet3d_b, "vitdet3d_b_sfp", "ViTDet3D-B")
