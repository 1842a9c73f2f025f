"""signature_keywords: accepted, required and unknown keyword arguments of a factory."""

from __future__ import annotations

import pytest

from ls_core import Keywords, signature_keywords


def positional_and_keyword(a, b=1, *args, c, d=2):
    pass


def open_ended(a, **kwargs):
    pass


def positional_only(a, /, b):
    pass


class WithInit:
    def __init__(self, *, size: int, p: float = 0.5) -> None:
        pass


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (positional_and_keyword, Keywords(accepted=("a", "b", "c", "d"), required=("a", "c"), open=False)),
        (open_ended, Keywords(accepted=("a",), required=("a",), open=True)),
        (positional_only, Keywords(accepted=("b",), required=("b",), open=False)),
        (WithInit, Keywords(accepted=("size", "p"), required=("size",), open=False)),
    ],
)  # fmt: skip
def test_signature(factory: object, expected: Keywords) -> None:
    assert signature_keywords(factory) == expected


def test_no_signature() -> None:
    class NoSignature:
        __signature__ = "not a signature"

    assert signature_keywords(NoSignature()) is None


def test_unknown_missing_valid() -> None:
    kw = signature_keywords(WithInit)
    assert kw.unknown(["size", "colour", "p"]) == ["colour"]
    assert kw.unknown(["size"], given=["size"]) == ["size"]
    assert kw.valid(given=["size"]) == ["p"]
    assert kw.missing(["p"]) == ["size"] and kw.missing(["size"]) == []
    assert signature_keywords(open_ended).unknown(["anything"]) == []
