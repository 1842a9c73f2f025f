"""``ls-data index build`` and ``ls-data index info``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from ls_data.catalog import Catalog
from ls_data.errors import DataError
from ls_data.index import CropIndex
from ls_data.index_cli import register
from ls_data.io import write_tiff_pair


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ls-data")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def build(catalog: str, out: object, *crop: str) -> list[str]:
    """The arguments of ``ls-data index build`` from ``catalog`` into ``out`` with crop shape ``crop``."""
    return ["index", "build", "--catalog", catalog, "--index-path", str(out), "--crop-shape", *crop]


@pytest.fixture
def catalog(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    rng = np.random.default_rng(0)
    with Catalog(url, roots=[tmp_path], create=True) as cat:
        for k, (split, grade) in enumerate([("train", "gold"), ("train", "silver"), ("val", "gold")]):
            labels = np.zeros((8, 16, 16), np.uint16)
            labels[1:5, 2:9, 3:10] = 1
            labels[4:8, 9:15, 8:16] = 2
            image = rng.integers(0, 100, size=(2, 8, 16, 16), dtype=np.uint16)
            image_path, label_path = write_tiff_pair(
                tmp_path / "tiff", f"v{k}", image, labels, (2, 1, 1), {2: 3}
            )
            cat.add_volume(
                name=f"v{k}",
                image_uri=str(image_path.relative_to(tmp_path)),
                label_uri=str(label_path.relative_to(tmp_path)),
                format="tiff",
                shape=image.shape,
                channels=2,
                spacing=(2.0, 1.0, 1.0),
                grade=grade,
                split=split,
            )
    return url


def test_build_prints_report_and_reuses(tmp_path, catalog, capsys):
    out = tmp_path / "idx.sqlite"
    argv = [*build(catalog, out, "4", "8", "8"), "--splits", "train"]
    assert run([*argv, "--stride", "4", "4", "8", "--channels", "1", "--min-visible-fraction", "0.25"]) == 0
    captured = capsys.readouterr()
    assert "v0: " in captured.err and "v1: " in captured.err  # progress lines
    assert (
        "volume" in captured.out
        and "total" in captured.out
        and "2 volume(s) indexed, 0 skipped" in captured.out
    )
    index = CropIndex.open(out)
    assert index.params["stride"] == [4, 4, 8] and index.params["channels"] == [1]
    assert index.params["min_visible_fraction"] == 0.25
    assert {v.name for v in index.volumes()} == {"v0", "v1"}
    assert run([*argv, "--stride", "4", "4", "8", "--channels", "1", "--min-visible-fraction", "0.25"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert run([*argv, "--grades", "gold", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reused"] is False and report["report"]["volumes"] == 1
    assert report["params"]["crop_shape"] == [4, 8, 8] and report["params"]["stride"] == [4, 8, 8]
    assert report["params"]["allow_missing_chunks"] is False
    assert run([*argv, "--allow-missing-chunks"]) == 0
    assert CropIndex.open(out).params["allow_missing_chunks"] is True


def test_skip_bad_and_errors(tmp_path, catalog, capsys):
    (tmp_path / "tiff" / "v2_labels.tif").unlink()
    out = tmp_path / "idx.sqlite"
    argv = build(catalog, out, "4")
    with pytest.raises(DataError, match=r"volume 'v2'.*v2_labels\.tif.*does not exist"):
        run(argv)
    assert not out.exists()
    assert run([*argv, "--skip-bad-volumes", "--roots", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "warning: skipping volume 'v2'" in captured.err
    assert "1 skipped" in captured.out and "skipped v2: " in captured.out
    with pytest.raises(DataError, match=r"--crop-shape must be an integer or a 3-tuple"):
        run([*argv, "--crop-shape", "4", "4"])
    with pytest.raises(DataError, match=r"volume 'v0'.*crop shape \(40, 40, 40\).*\(8, 16, 16\)"):
        run([*argv, "--crop-shape", "40"])


def test_info(tmp_path, catalog, capsys):
    out = tmp_path / "idx.sqlite"
    assert run(build(catalog, out, "4", "8", "8")) == 0
    capsys.readouterr()
    assert run(["index", "info", str(out), "--crops", "2"]) == 0
    text = capsys.readouterr().out
    assert "fingerprint" in text and "origin (z, y, x)" in text and "3 volume(s) indexed" in text
    assert run(["index", "info", str(out), "--json", "--crops", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["crops"] == len(CropIndex.open(out)) and len(info["volumes"]) == 3
    assert info["first_crops"][0]["instances"][0]["box"] == [1, 2, 3, 4, 8, 8]
    with pytest.raises(DataError, match="does not exist"):
        run(["index", "info", str(tmp_path / "nope.sqlite")])


def test_through_ls_data_main(tmp_path, catalog, capsys):
    from ls_data.cli import main

    out = tmp_path / "idx.sqlite"
    assert main([*build(catalog, out, "4", "8", "8"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"]["volumes"] == 3
    assert main(["index", "info", str(out)]) == 0
    assert main(build(catalog, out, "9", "8", "8")) == 2
    assert "crop shape (9, 8, 8) is larger than the volume shape (8, 16, 16)" in capsys.readouterr().err


def test_build_from_a_missing_catalog_creates_nothing(tmp_path, capsys):
    from ls_data.cli import main

    typo, out = tmp_path / "typo.sqlite", tmp_path / "idx.sqlite"
    assert main(build(f"sqlite:///{typo}", out, "4")) == 2
    err = capsys.readouterr().err
    assert err.startswith("ls-data index: error: catalog ") and f"no file '{typo}'" in err
    assert "ls-data catalog register" in err
    assert not typo.exists() and not out.exists()


def test_empty_selection_keeps_the_existing_index(tmp_path, catalog, capsys):
    from ls_data.cli import main

    out = tmp_path / "idx.sqlite"
    argv = build(catalog, out, "4", "8", "8")
    assert main([*argv, "--splits", "train"]) == 0
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    capsys.readouterr()
    assert main([*argv, "--splits", "trian"]) == 2
    err = capsys.readouterr().err
    assert f"no volume of catalog '{catalog}' matches the selection {{'splits': ['trian']}}" in err
    assert "3 volume(s) have splits ['train', 'val'] and grades ['gold', 'silver']" in err
    assert f"crop index '{out}' not written" in err
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before
    empty = tmp_path / "empty.sqlite"
    Catalog(f"sqlite:///{empty}", create=True).close()
    assert main([*argv[:3], f"sqlite:///{empty}", *argv[4:]]) == 2
    assert "holds no volumes, nothing to index" in capsys.readouterr().err
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before


def test_sigterm_mid_build_removes_the_temporary_file_and_keeps_the_index(tmp_path, catalog):
    """SIGTERM to ``ls-data index build`` between two volumes: status 143, the index that was there
    byte for byte, no temporary file; the same command then rebuilds it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ls_core.faults import FAULT_DIR_ENV, FAULT_ENV

    out = tmp_path / "index.sqlite"
    argv = [sys.executable, "-m", "ls_data.cli", *build(catalog, out, "4", "8", "8")]
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    before = out.read_bytes()
    folder = tmp_path / "fault"
    folder.mkdir()
    env = {**os.environ, FAULT_ENV: "index.build:2", FAULT_DIR_ENV: str(folder)}
    proc = subprocess.Popen([*argv, "--rebuild"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "paused").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (folder / "paused").exists(), "the build never reached its second volume"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # half-written, not yet in place
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    again = subprocess.run([*argv, "--rebuild"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_the_old_flags_still_build_the_index(tmp_path, catalog, capsys):
    from ls_data.cli import main

    out = tmp_path / "old.sqlite"
    old = ["--db", catalog, "--out", str(out), "--crop", "4", "8", "8", "--min-instances", "1", "--skip-bad"]
    assert main(["index", "build", *old]) == 0
    err = capsys.readouterr().err
    assert "ls-data index build: --db is deprecated; use --catalog" in err
    assert "--out is deprecated; use --index-path" in err and "--skip-bad is deprecated" in err
    assert len(CropIndex.open(out)) > 0 and CropIndex.open(out).params["crop_shape"] == [4, 8, 8]
