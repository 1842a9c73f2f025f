"""Components of a config: sections that name a builder (``name:`` in a registry, or ``_target_``)
and the keyword arguments it is called with.

:func:`check_component` checks one such section without building it: the name is registered (or
the target imports), the keys are arguments the builder takes, and the builder's own
``check_arguments`` accepts the values. :func:`load_target` is also what :mod:`ls_train.factory`
builds a ``_target_`` with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ls_core import Component, did_you_mean, load_object, signature_keywords, split_component
from ls_train.config.errors import ConfigError

__all__ = ["check_component", "check_keywords", "load_target"]


def check_keywords(
    factory: Callable[..., Any], kwargs: Iterable[str], where: str, *, given: Sequence[str] = ()
) -> None:
    """Raise :class:`ConfigError` when ``factory`` takes none of some ``kwargs`` (the valid ones listed).

    A factory with ``**kwargs`` accepts any key; it reports bad ones itself when called.

    Args:
        factory: Class or function.
        kwargs: The config keys that will be passed as keyword arguments.
        where: Config path of the section, for the message.
        given: Keyword arguments the runner passes itself (not valid as config keys).
    """
    keywords = signature_keywords(factory)
    unknown = [] if keywords is None else keywords.unknown(kwargs, given=given)
    if unknown:
        key, valid = unknown[0], keywords.valid(given=given)
        label = getattr(factory, "__qualname__", repr(factory))
        raise ConfigError(
            f"{where}.{key}: {label} takes no argument {key!r}.{did_you_mean(key, valid)} "
            f"Valid keys: {', '.join(valid)}"
        )


def load_target(path: Any, where: str) -> Callable[..., Any]:
    """The callable a ``_target_`` names (:func:`ls_core.load_object`); ConfigError naming ``where``."""
    try:
        obj = load_object(str(path))
    except Exception as exc:
        hint = (
            " (a class of the original system: see docs/migrating-from-the-original-system.md)"
            if str(path).startswith("segmentation.")
            else ""
        )
        raise ConfigError(f"{where}._target_: cannot import {path!r}: {exc}{hint}") from exc
    if not callable(obj):
        raise ConfigError(f"{where}._target_: {path!r} is not callable")
    return obj


def _split(section: Any, where: str, kind: str) -> Component:
    """:func:`ls_core.split_component`, with a hint when a group option's ``name`` meets a ``_target_``."""
    try:
        return split_component(section, where, kind=kind, error=ConfigError)
    except ConfigError as exc:
        both = isinstance(section, Mapping) and "name" in section and "_target_" in section
        if not both:
            raise
        raise ConfigError(
            f"{exc} (both given: name {section['name']!r} likely comes from a group option of the "
            f"defaults list; select your own option for a _target_ {kind})"
        ) from None


def _builder(
    component: Component,
    where: str,
    kind: str,
    list_names: Callable[[], list[str]],
    get_builder: Callable[[str], Callable[..., Any]],
) -> Callable[..., Any]:
    """The builder a component names: its ``_target_``, or its registered ``name``."""
    if component.target is not None:
        return load_target(component.target, where)
    name = component.name
    known = list_names()
    if name not in known:
        raise ConfigError(
            f"{where}.name: unknown {kind} {name!r}.{did_you_mean(name, known)} "
            f"Known {kind}s: {', '.join(known)}"
        )
    try:
        return get_builder(name)
    except Exception as exc:
        raise ConfigError(f"{where}.name: {kind} {name!r} cannot be loaded: {exc}") from exc


def check_component(
    section: Any,
    where: str,
    *,
    kind: str,
    list_names: Callable[[], list[str]],
    get_builder: Callable[[str], Callable[..., Any]],
    reserved: Sequence[str] = (),
    given: Sequence[str] = (),
    check: Callable[[Callable[..., Any], Mapping[str, Any], str], bool] | None = None,
) -> None:
    """Check one ``{name: ..., **kwargs}`` / ``{_target_: ..., **kwargs}`` section.

    Args:
        section: The section.
        where: Its config path, for the messages.
        kind: What it builds (``"detector"``, ``"dataset"``, ...), for the messages.
        list_names: The registered names of that kind.
        get_builder: The builder registered under a name.
        reserved: Keys of the section that are not arguments of the builder.
        given: Keyword arguments the runner passes itself (not valid as config keys).
        check: ``check(builder, section, where)``, when given, checks the keys and values itself
            and says so by returning True; else they are checked against the builder's signature.

    Raises:
        ConfigError: naming the key and listing the valid keys or names.
    """
    component = _split(section, where, kind)
    builder = _builder(component, where, kind, list_names, get_builder)
    if check is not None and check(builder, section, where):
        return
    keys = [k for k in component.kwargs if k not in reserved]
    check_keywords(builder, keys, where, given=given)
    check_arguments = getattr(builder, "check_arguments", None)
    if callable(check_arguments):  # a component's own checks of values that need no file
        try:
            check_arguments(**{k: component.kwargs[k] for k in keys})
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
