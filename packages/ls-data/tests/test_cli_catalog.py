"""``ls-data catalog register | list | show | remove``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ls_data import catalog_cli
from ls_data.catalog import Catalog, RegisterError, VolumeNotFoundError
from ls_data.errors import DataError
from ls_data.io import write_ome_zarr, write_tiff_pair


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ls-data")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    image = np.arange(2 * 4 * 8 * 8, dtype=np.uint16).reshape(2, 4, 8, 8)
    labels = np.zeros((4, 8, 8), dtype=np.uint16)
    labels[1:3, 1:4, 1:4] = 1
    write_tiff_pair(folder, "alpha", image, labels, (2.0, 0.5, 0.5))
    write_ome_zarr(folder / "beta.ome.zarr", image, (3.0, 0.25, 0.25), labels=labels)
    return folder


def test_register_list_show_remove(data, tmp_path, capsys, catalog_url):
    assert (
        _run(
            [
                "catalog",
                "register",
                str(data),
                "--catalog",
                catalog_url,
                "--grade",
                "gold",
                "--split",
                "train",
                "--attributes",
                "stage=12",
                "--attributes",
                "who=ana",
                "--roots",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 added, 0 updated, 0 skipped" in out and "alpha" in out and "beta" in out
    assert "***" in out if "@" in catalog_url else True  # the password is never printed
    with Catalog(catalog_url) as catalog:
        assert catalog.get("alpha").attributes == {"stage": 12, "who": "ana"}

    assert _run(["catalog", "list", "--catalog", catalog_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "name", "format"]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split()[1] for line in lines[2:4]] == ["alpha", "beta"]
    assert lines[2].index("tiff") == lines[3].index("ome-zarr") == lines[0].index("format")  # aligned
    assert "2x4x8x8" in lines[2] and "2,0.5,0.5" in lines[2]
    assert lines[-1] == "2 volume(s)"

    assert _run(["catalog", "list", "--catalog", catalog_url, "--formats", "ome-zarr"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[2:-1]] == ["beta"]
    assert _run(["catalog", "list", "--catalog", catalog_url, "--splits", "val"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 volume(s)"
    assert _run(["catalog", "list", "--catalog", catalog_url, "--attributes", "stage=12", "--json"]) == 0
    assert [v["name"] for v in json.loads(capsys.readouterr().out)] == ["alpha", "beta"]

    assert _run(["catalog", "show", "alpha", "--catalog", catalog_url, "--roots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2x4x8x8" in out and str((data / "alpha_image.tif").resolve()) in out and "(missing)" not in out
    assert (
        _run(["catalog", "show", "beta", "--catalog", catalog_url, "--roots", str(tmp_path), "--json"]) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["label_path"] == str((data / "beta.ome.zarr" / "labels" / "cells").resolve())

    assert _run(["catalog", "remove", "alpha", "--catalog", catalog_url]) == 0
    assert "removed volume" in capsys.readouterr().out
    with Catalog(catalog_url) as catalog:
        beta_id = catalog.get("beta").id
        assert [v.name for v in catalog.volumes()] == ["beta"]
    assert _run(["catalog", "remove", str(beta_id), "--catalog", catalog_url]) == 0  # by id
    with pytest.raises(VolumeNotFoundError, match="'alpha'"):
        _run(["catalog", "show", "alpha", "--catalog", catalog_url])


def test_old_selection_flags_list_the_same_volumes(data, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert _run(["catalog", "register", str(data), "--catalog", db, "--grade", "gold", "--attr", "k=1"]) == 0
    with Catalog(db) as catalog:
        assert catalog.get("beta").attributes == {"k": 1}
        catalog.add_volume(
            name="other", image_uri="o.tif", label_uri="o_labels.tif", format="tiff",
            shape=(1, 2, 2, 2), channels=1, spacing=(1.0, 1.0, 1.0), grade="silver",
        )  # fmt: skip
    capsys.readouterr()
    new = ["--grades", "gold", "--formats", "ome-zarr", "--names", "beta", "--attributes", "k=1"]
    old = ["--grade", "gold", "--format", "ome-zarr", "--name", "beta", "--attr", "k=1"]
    listed = {}
    for flags in (new, old):
        assert _run(["catalog", "list", "--catalog", db, *flags, "--json"]) == 0
        out, err = capsys.readouterr()
        listed[flags[0]] = [v["name"] for v in json.loads(out)]
        notes = [line for line in err.splitlines() if "is deprecated" in line]
        assert len(notes) == (4 if flags is old else 0)
    assert listed == {"--grades": ["beta"], "--grade": ["beta"]}


def test_register_skip_bad_and_errors(data, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    (data / "gamma_image.tif").write_bytes((data / "alpha_image.tif").read_bytes())  # no labels
    with pytest.raises(RegisterError, match="gamma"):
        _run(["catalog", "register", str(data), "--catalog", db])
    with pytest.warns(UserWarning, match="gamma"):
        assert _run(["catalog", "register", str(data), "--catalog", db, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped         gamma: image file" in out and "2 added, 0 updated, 1 skipped" in out
    with pytest.raises(DataError, match="must be KEY=VALUE"):
        _run(["catalog", "register", str(data), "--catalog", db, "--attributes", "novalue"])


def test_default_db_is_catalog_sqlite_in_cwd(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run(["catalog", "register", "data"]) == 0
    assert (tmp_path / "catalog.sqlite").is_file()
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        assert catalog.get("alpha").image_uri == "data/alpha_image.tif"  # relative to the catalog


def test_ls_data_main_reports_errors_in_one_line(tmp_path, capsys):
    from ls_data.cli import main

    port_url = "postgresql://u:topsecret@127.0.0.1:1/db?connect_timeout=3"
    assert main(["catalog", "list", "--catalog", port_url]) == 2
    err = capsys.readouterr().err
    assert "topsecret" not in err and "postgresql://u:***@127.0.0.1:1/db" in err
    Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True).close()
    assert main(["catalog", "show", "x", "--catalog", f"sqlite:///{tmp_path / 'c.sqlite'}"]) == 2
    assert "no volume named 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["list"], ["show", "alpha"], ["remove", "alpha"]])
def test_reading_commands_never_create_a_catalog(tmp_path, capsys, command):
    from ls_data.cli import main

    typo = tmp_path / "typo.sqlite"
    assert main(["catalog", *command, "--catalog", f"sqlite:///{typo}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ls-data catalog: error: catalog ") and err.count("\n") == 1
    assert f"no file '{typo}'" in err and "ls-data catalog register FOLDER --catalog" in err
    assert not typo.exists()


def test_failed_register_leaves_no_new_catalog(data, tmp_path, capsys):
    from ls_data.cli import main

    db = tmp_path / "new.sqlite"
    missing = str(tmp_path / "no_such_folder")
    assert main(["catalog", "register", missing, "--catalog", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert f"folder '{tmp_path / 'no_such_folder'}' does not exist or is not a folder" in err
    assert not db.exists()
    (tmp_path / "empty").mkdir()
    assert main(["catalog", "register", str(tmp_path / "empty"), "--catalog", f"sqlite:///{db}"]) == 2
    assert "no volumes in" in capsys.readouterr().err and not db.exists()
    (data / "gamma_image.tif").write_bytes((data / "alpha_image.tif").read_bytes())  # no labels
    assert main(["catalog", "register", str(data), "--catalog", f"sqlite:///{db}"]) == 2
    assert "gamma" in capsys.readouterr().err and not db.exists()
    # A catalog that existed before the failed run stays, even an empty one.
    Catalog(f"sqlite:///{db}", create=True).close()
    assert main(["catalog", "register", str(data), "--catalog", f"sqlite:///{db}"]) == 2
    assert db.is_file()
