"""``ls-data synth`` end to end on a tiny dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ls_data.io import open_image, open_labels

TINY = ["--num-volumes", "2", "--shape", "6", "24", "24", "--num-objects", "4", "--radius-range-um", "2", "3"]


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


def test_synth_out_that_is_a_file_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ls_data.cli import main

    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    assert main(["synth", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    expected = f"synth output folder '{out}' exists and is not a folder; choose another --out"
    assert err == f"ls-data synth: error: {expected}\n"
    assert main(["synth", "--out", str(out / "ds"), *TINY]) == 2
    assert f"'{out / 'ds'}' cannot be created: '{out}' is not a folder" in capsys.readouterr().err
    assert out.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--shape", "0", "8", "8"], "shape"),
        (["--touching", "0"], "touching must be > 0"),
        (["--photons", "0"], "photons > 0"),
        (["--radius-range-um", "3", "2"], "radius_range_um"),
        (["--levels", "0"], "levels must be an int >= 1"),
        (["--num-volumes", "0"], "num_volumes"),
        (["--catalog", "mysql://u@h/db"], "unsupported scheme 'mysql'"),
    ],
)
def test_synth_bad_arguments_create_no_folder_and_no_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str], message: str
) -> None:
    from ls_data.cli import main

    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), *TINY, *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ls-data synth: error:") and message in err
    assert not out.exists()


def test_synth_into_a_catalog_that_has_its_volumes_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ls_data.cli import main

    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), *TINY, "--formats", "tiff"]) == 0
    image = out / "tiff" / "synth_000_image.tif"
    before = image.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["synth", "--out", str(out), *TINY, "--formats", "tiff", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert (
        "already has 2 volume(s) of this synth run (synth_000-tiff, synth_001-tiff); nothing written" in err
    )
    assert image.stat().st_mtime_ns == before
