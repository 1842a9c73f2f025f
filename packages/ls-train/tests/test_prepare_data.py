"""prepare_data: a synthetic dataset is generated into an empty data.root only; reusing a folder
says so, and warns when it was generated with other data.synthesize settings; the driver builds
each crop index once, the workers only open it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ls_train.config import load_config
from ls_train.trainer.run import SYNTHESIZED_FILE, prepare_data


def test_reuse_is_said_and_a_dataset_of_other_settings_is_a_warning(
    tmp_path: Path, tiny_overrides: Callable[..., list[str]]
) -> None:
    lines: list[str] = []
    prepare_data(load_config("quickstart", tiny_overrides(tmp_path)), print_fn=lines.append)
    root = tmp_path / "data"
    made = json.loads((root / SYNTHESIZED_FILE).read_text())
    assert made["num_volumes"] == 3 and any("synthetic dataset ready: 3 volumes" in s for s in lines)

    lines.clear()
    prepare_data(load_config("quickstart", tiny_overrides(tmp_path)), print_fn=lines.append)
    assert lines[0] == f"using the data in {root} (data.synthesize generates only into an empty folder)"

    lines.clear()
    other = tiny_overrides(tmp_path, "data.synthesize.num_volumes=4")
    prepare_data(load_config("quickstart", other), print_fn=lines.append)
    assert lines[0].startswith("warning: using the data in")
    assert "num_volumes: 3 there, 4 asked" in lines[0] and "empty the folder" in lines[0]
    assert not any("generating" in s for s in lines)


def test_the_driver_builds_each_index_once_and_the_workers_only_open_it(
    tmp_path: Path, tiny_overrides: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ls_data import DataError, dataset_entry
    from ls_train.factory import build_eval_dataset, build_train_loaders

    cfg = load_config("quickstart", tiny_overrides(tmp_path))
    built: list[Path] = []
    build = dataset_entry.build_crop_index
    monkeypatch.setattr(
        dataset_entry, "build_crop_index", lambda **kw: (built.append(Path(kw["index_path"])), build(**kw))[1]
    )
    train, val = tmp_path / "data" / "index_train.sqlite", tmp_path / "data" / "index_val.sqlite"
    fingerprints = prepare_data(cfg, print_fn=lambda line: None)
    assert built == [train, val]
    assert set(fingerprints) == {"datasets.database", "evaluation.database"}
    mtimes = {path: path.stat().st_mtime_ns for path in (train, val)}

    built.clear()  # the workers' path: open, never build
    loaders = build_train_loaders(cfg, fingerprints)
    held_out = build_eval_dataset(cfg, fingerprints)
    assert len(loaders["train"].dataset) == 2 and held_out is not None and len(held_out) == 1
    assert built == [] and {path: path.stat().st_mtime_ns for path in (train, val)} == mtimes

    with pytest.raises(DataError, match=rf"crop index '{train}' is stale"):
        build_train_loaders(cfg, {"datasets.database": "0" * 64})
    train.unlink()
    with pytest.raises(DataError, match=rf"crop index '{train}' does not exist; build it first"):
        build_train_loaders(cfg, fingerprints)
    assert built == [] and not train.exists()
