"""prepare_data: a synthetic dataset is generated into an empty data.root only; reusing a folder
says so, and warns when it was generated with other data.synthesize settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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
