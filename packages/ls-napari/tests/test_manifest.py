"""The npe2 manifest: valid, every command importable (``npe2 validate --imports``), as documented."""

from __future__ import annotations

from npe2 import PluginManifest


def test_manifest_is_valid_and_its_commands_import():
    manifest = PluginManifest.from_distribution("ls-napari")  # validates the schema, as npe2 validate
    manifest.validate_imports()  # what `npe2 validate --imports` adds: every python_name resolves
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} == {
        "Segment (ls-predict)",
        "Evaluate (ls-evaluate)",
    }
    assert [s.key for s in contributions.sample_data] == ["synthetic"]
    assert set(contributions.readers[0].filename_patterns) == {"*.tif", "*.tiff", "*.zarr"}
    assert contributions.writers[0].layer_types == ["labels"]
    commands = {c.id: c.python_name for c in contributions.commands}
    assert commands["ls-napari.segment_widget"] == "ls_napari.segment_widget:SegmentWidget"
