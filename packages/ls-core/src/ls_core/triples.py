"""Per-axis values ``(z, y, x)``: a single number means the same on every axis."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["parse_triple"]


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)  # numpy scalars too


def _shape_message(name: str, value: Any, *, integer: bool, scalar: bool) -> str:
    one, many = ("an integer", "integers") if integer else ("a number", "numbers")
    head = f"{one} or a 3-tuple" if scalar else "a 3-tuple"
    return f"{name} must be {head} (z, y, x) of {many}, got {value!r}"


def _items(value: Any, name: str, *, integer: bool, scalar: bool, error: type[Exception]) -> tuple:
    if _number(value):
        if scalar:
            return (value, value, value)
    elif not isinstance(value, str | bytes):
        try:
            items = tuple(value)
        except TypeError:
            items = ()
        if len(items) == 3 and all(_number(v) for v in items):
            return items
    raise error(_shape_message(name, value, integer=integer, scalar=scalar))


def parse_triple(
    value: Any,
    name: str,
    *,
    integer: bool = True,
    minimum: float | None = None,
    positive: bool = False,
    scalar: bool = True,
    error: type[Exception] = ValueError,
) -> tuple[Any, Any, Any]:
    """``value`` as a ``(z, y, x)`` tuple of ints (or floats with ``integer=False``).

    Numbers are Python or numpy reals (never ``bool``); a string is not a sequence here.

    Args:
        value: A number (the same on every axis, unless ``scalar=False``) or three numbers.
        name: The argument or config key, named in every message.
        integer: Each value must be integral (``2.0`` is read as ``2``); ints are returned.
            Otherwise each must be finite, and floats are returned.
        minimum: Each value must be ``>= minimum``.
        positive: Each value must be ``> 0``.
        scalar: Accept a single number.
        error: The exception class raised.

    Raises:
        error: naming ``name`` and the value given.
    """
    items = _items(value, name, integer=integer, scalar=scalar, error=error)
    integral = all(math.isfinite(v) and int(v) == v for v in items)
    if integer and not integral:
        raise error(_shape_message(name, value, integer=True, scalar=scalar))
    if not all(math.isfinite(v) for v in items):
        raise error(f"{name} must be finite on every axis (z, y, x), got {value!r}")
    if positive and any(v <= 0 for v in items):
        raise error(f"{name} must be positive on every axis (z, y, x), got {value!r}")
    if minimum is not None and any(v < minimum for v in items):
        raise error(f"{name} must be >= {minimum} on every axis (z, y, x), got {value!r}")
    kind = int if integer else float
    return kind(items[0]), kind(items[1]), kind(items[2])
