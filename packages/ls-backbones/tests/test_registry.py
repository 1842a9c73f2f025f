"""The ls.backbones entry-point registry: listing, lookup, and the errors it gives."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ls_backbones
from ls_backbones import BackboneRegistryError, create_backbone, get_backbone_builder, list_backbones

BUILTIN_PRESETS = {
    "resnet3d_18", "resnet3d_34", "resnet3d_50", "resnet3d_101", "resnet3d_152",
    "resnet3d_18_fpn", "resnet3d_50_fpn", "vitdet3d_s", "vitdet3d_b", "vitdet3d_s_sfp",
    "vitdet3d_b_sfp", "hiera3d_t", "hiera3d_s", "hiera3d_b", "hiera3d_t_fpn", "hiera3d_b_fpn",
    "resnet3d", "vitdet3d", "hiera3d", "fpn3d",
}  # fmt: skip


def make_distribution(root: Path, name: str, version: str, entries: dict[str, str],
                      modules: dict[str, str] | None = None) -> Path:
    """Lay out an installed distribution (dist-info + modules) under ``root``, as pip would."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[ls.backbones]\n{lines}")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


def test_builtins_are_listed_sorted() -> None:
    names = list_backbones()
    assert names == sorted(names)
    assert set(names) >= BUILTIN_PRESETS, BUILTIN_PRESETS - set(names)


def test_listing_imports_no_backbone_module() -> None:
    code = textwrap.dedent(
        """
        import sys
        import ls_backbones
        names = ls_backbones.list_backbones()
        assert "resnet3d_50" in names, names
        loaded = sorted(m for m in sys.modules if m.startswith("ls_backbones."))
        assert loaded == ["ls_backbones.base", "ls_backbones.registry"], loaded
        ls_backbones.get_backbone_builder("resnet3d_18")
        assert "ls_backbones.resnet" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_lists_known_ones_and_suggests() -> None:
    with pytest.raises(BackboneRegistryError) as info:
        create_backbone("resnet3d_5O")
    message = str(info.value)
    assert "unknown backbone 'resnet3d_5O'" in message
    assert "Did you mean 'resnet3d_50'" in message
    for name in ("hiera3d_b", "vitdet3d_s", "resnet3d_152"):
        assert name in message


def test_create_builds_a_backbone_with_kwargs() -> None:
    net = create_backbone("resnet3d_18", in_channels=2, out_features=("p2", "p3"))
    assert isinstance(net, ls_backbones.Backbone3D)
    assert net.in_channels == 2
    assert list(net.output_shape()) == ["p2", "p3"]


def test_builder_rejecting_kwargs_names_the_backbone() -> None:
    with pytest.raises(TypeError, match=r"create_backbone\('resnet3d_18', \.\.\.\).*no_such_kwarg"):
        create_backbone("resnet3d_18", no_such_kwarg=1)


def test_duplicate_name_names_both_distributions(tmp_path: Path, monkeypatch) -> None:
    make_distribution(tmp_path, "lab-nets", "1.2.0", {"resnet3d_50": "lab_nets:build"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackboneRegistryError) as info:
        list_backbones()
    message = str(info.value)
    assert "'resnet3d_50' is declared twice" in message
    assert "lab-nets 1.2.0" in message and "ls-backbones" in message
    with pytest.raises(BackboneRegistryError, match="declared twice"):
        create_backbone("resnet3d_18")


def test_failing_plugin_names_its_distribution(tmp_path: Path, monkeypatch) -> None:
    make_distribution(
        tmp_path, "broken-plugin", "0.3", {"broken3d": "broken_plugin_mod:Net"},
        {"broken_plugin_mod": "import a_module_that_does_not_exist\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken3d" in list_backbones()  # listing does not import the plugin
    assert "broken_plugin_mod" not in sys.modules
    with pytest.raises(BackboneRegistryError) as info:
        create_backbone("broken3d")
    message = str(info.value)
    assert "'broken-plugin 0.3'" in message
    assert "ModuleNotFoundError" in message and "a_module_that_does_not_exist" in message


def test_plugin_returning_a_non_backbone_is_rejected(tmp_path: Path, monkeypatch) -> None:
    make_distribution(
        tmp_path, "odd-plugin", "1.0",
        {"odd3d": "odd_plugin_mod:build", "notcallable": "odd_plugin_mod:VALUE"},
        {"odd_plugin_mod": "import torch\nVALUE = 3\ndef build():\n    return torch.nn.Linear(2, 2)\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="'odd3d' built a Linear, which does not honour the backbone"):
        create_backbone("odd3d")
    with pytest.raises(BackboneRegistryError, match=r"'notcallable'.*not callable"):
        get_backbone_builder("notcallable")
