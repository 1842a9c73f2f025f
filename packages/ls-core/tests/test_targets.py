"""load_object: Hydra-style dotted paths, and messages that name the path."""

from __future__ import annotations

import collections
import os.path

import pytest

from ls_core import load_object


class TargetError(LookupError):
    pass


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("os.path.join", os.path.join),
        ("os.path:join", os.path.join),
        ("collections.OrderedDict.fromkeys", collections.OrderedDict.fromkeys),
        ("collections:OrderedDict.fromkeys", collections.OrderedDict.fromkeys),
    ],
)
def test_paths(path: str, expected: object) -> None:
    assert load_object(path) == expected


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("", r"_target_ must be a dotted path such as 'package.module.Class', got ''"),
        (".os.path", r"_target_ must be a dotted path"),
        ("os.path.", r"_target_ must be a dotted path"),
        (3, r"_target_ must be a dotted path.*got 3"),
        ("no_such_module_xyz.Thing", r"_target_ 'no_such_module_xyz.Thing': no importable module"),
        ("json.no_such_fn", r"_target_ 'json.no_such_fn': 'json' has no attribute 'no_such_fn'"),
        ("collections.OrderedDict.nope", r"'collections.OrderedDict' has no attribute 'nope'"),
        ("no_such_module_xyz:Thing", r"_target_ 'no_such_module_xyz:Thing': importing 'no_such_module_xyz'"),
    ],
)  # fmt: skip
def test_errors_name_the_path(path: str, pattern: str) -> None:
    with pytest.raises(TargetError, match=pattern):
        load_object(path, error=TargetError)


def test_a_module_failing_inside_is_reported_not_skipped(tmp_path, monkeypatch) -> None:
    (tmp_path / "core_test_bad_mod.py").write_text("import core_test_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LookupError, match=r"importing 'core_test_bad_mod' failed: .*core_test_missing_dep"):
        load_object("core_test_bad_mod.Thing")
    (tmp_path / "core_test_raising_mod.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(LookupError, match=r"importing 'core_test_raising_mod' failed: RuntimeError: boom"):
        load_object("core_test_raising_mod.Thing")
