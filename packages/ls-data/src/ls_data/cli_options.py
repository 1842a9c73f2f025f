"""Options of the ``ls-data`` commands that keep an old spelling as a deprecated alias.

A flag spells the Python argument it sets (``--num-objects`` sets ``num_objects``). A renamed
flag keeps its old spelling as an alias that ``--help`` does not show; using it works as before
and prints one line to stderr that names the new spelling.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["DeprecatedAlias", "add_option"]


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: notes the new spelling on stderr, then does what the new
    option's action does (stores, stores a constant, or appends to the same ``dest``)."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, *, new: str, target: argparse.Action, **kwargs: Any
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new
        self.target = target

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        self.target(parser, namespace, values, option_string)


def add_option(
    parser: argparse.ArgumentParser, name: str, *, aliases: Sequence[str] = (), **kwargs: Any
) -> argparse.Action:
    """Add the option ``name`` (``add_argument`` keywords) and its deprecated ``aliases``.

    A required option and its aliases form a required group of which exactly one is given.

    Returns:
        The action of ``name``.
    """
    target: Any = parser
    if aliases and kwargs.pop("required", False):
        target = parser.add_mutually_exclusive_group(required=True)
    action = target.add_argument(name, **kwargs)
    for alias in aliases:
        target.add_argument(
            alias,
            action=DeprecatedAlias,
            new=name,
            target=action,
            dest=action.dest,
            nargs=action.nargs,
            const=action.const,
            type=action.type,
            choices=action.choices,
            metavar=action.metavar,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
    return action
