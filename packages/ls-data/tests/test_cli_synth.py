"""``ls-data synth`` end to end on a tiny dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ls_data.io import open_image, open_labels

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("ls_data.catalog_cli", "ls_data.index_cli")),
    reason="the catalog / index CLI modules (helpers B and C) are not written yet",
)

TINY = ["--num-volumes", "2", "--shape", "6", "24", "24", "--objects", "4", "--radius-range", "2", "3"]


def test_synth_writes_files_catalog_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ls_data.catalog import Catalog
    from ls_data.cli import main

    out = tmp_path / "ds"
    rc = main(["synth", "--out", str(out), *TINY, "--channels", "2", "--num-classes", "2", "--seed", "5"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("[1/2] synth_000:") and lines[1].startswith("[2/2] synth_001:")
    assert "2 volumes" in lines[-1] and "catalog" in lines[-1]
    image = open_image(out / "ome-zarr" / "synth_001.ome.zarr")
    assert image.shape == (2, 6, 24, 24)
    labels = open_labels(out / "tiff" / "synth_001_labels.tif")
    assert set(labels.classes().values()) <= {1, 2}
    assert labels.read().max() == len(labels.classes())
    with Catalog(f"sqlite:///{out}/catalog.sqlite", roots=[out]) as catalog:
        assert len(catalog.volumes()) == 4


def test_synth_no_catalog_one_format_is_deterministic(tmp_path: Path) -> None:
    from ls_data.cli import main

    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), *TINY, "--formats", "tiff", "--no-catalog"]) == 0
    assert not (tmp_path / "a" / "catalog.sqlite").exists() and not (tmp_path / "a" / "ome-zarr").exists()
    for suffix in ("image", "labels"):
        a = open_image if suffix == "image" else open_labels
        np.testing.assert_array_equal(
            a(tmp_path / "a" / "tiff" / f"synth_000_{suffix}.tif").read(),
            a(tmp_path / "b" / "tiff" / f"synth_000_{suffix}.tif").read(),
        )


def test_synth_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ls_data.cli import main

    rc = main(["synth", "--out", str(tmp_path / "x"), "--shape", "0", "8", "8", "--no-catalog"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("ls-data synth: error:") and "shape" in err
