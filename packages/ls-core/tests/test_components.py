"""split_component: the one reading of a ``{name: ...}`` / ``{_target_: ...}`` config entry."""

from __future__ import annotations

import os.path
from collections import OrderedDict

import pytest

from ls_core import Component, split_component


class EntryError(ValueError):
    pass


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "random_flip", "p": 0.5}, Component(name="random_flip", kwargs={"p": 0.5})),
        ({"_target_": "pkg.mod.Class"}, Component(target="pkg.mod.Class")),
        (OrderedDict(name="resnet3d_18", in_channels=2),
         Component(name="resnet3d_18", kwargs={"in_channels": 2})),
    ],
)  # fmt: skip
def test_split(entry: dict, expected: Component) -> None:
    assert split_component(entry, "x", kind="transform") == expected


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ("random_flip", r"transforms_list\[0\] must be a mapping with 'name' or '_target_', "
                        r"got 'random_flip'"),
        ({"p": 0.5}, r"transforms_list\[0\] must have exactly one of 'name' \(a registered transform\) "
                     r"or '_target_' \(a dotted path\); got keys \['p'\]"),
        ({"name": "a", "_target_": "b.C"}, r"\[0\] must have exactly one of.*\['_target_', 'name'\]"),
        ({"name": "a", "_partial_": True}, r"\[0\]: Hydra keys \['_partial_'\] are not supported"),
        ({"_target_": "b.C", "_args_": [1], "_convert_": "all"}, r"Hydra keys \['_args_', '_convert_'\]"),
    ],
)  # fmt: skip
def test_bad_entries_name_the_place(entry: object, pattern: str) -> None:
    with pytest.raises(EntryError, match=pattern):
        split_component(entry, "transforms_list[0]", kind="transform", error=EntryError)


def test_ident_and_factory() -> None:
    by_name = split_component({"name": "join"}, "x", kind="thing")
    by_target = split_component({"_target_": "os.path.join"}, "x", kind="thing")
    assert by_name.ident == "'join'" and by_target.ident == "_target_ 'os.path.join'"
    assert by_name.factory({"join": os.path.join}.__getitem__) is os.path.join
    assert by_target.factory(lambda name: pytest.fail("a target is not looked up")) is os.path.join
    with pytest.raises(EntryError, match="no importable module"):
        split_component({"_target_": "nope_xyz.f"}, "x", kind="thing").factory(dict, error=EntryError)
