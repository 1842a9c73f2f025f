"""Where experiment configs are looked up, first match wins.

:func:`config_search_path` lists the sources of :func:`ls_train.config.load_config`: every
``config_dirs`` folder given, ``./configs`` (when present) and the tree packaged with ls-train
(:data:`PACKAGED_CONFIGS`). While a composition runs (:func:`searched_first`), ls-train's Hydra
search-path plugin (``hydra_plugins.ls_train_searchpath``) reads them from
:func:`compose_sources` and puts them at the front of Hydra's search path. The commands search the
same places in Hydra's order (see :mod:`ls_train.hydra_app`).

Light on purpose: the plugin and the commands' ``--help`` read this without importing the
validation's builders.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ls_train.config.errors import ConfigError

__all__ = ["PACKAGED_CONFIGS", "compose_sources", "config_search_path", "searched_first"]

PACKAGED_CONFIGS = "pkg://ls_train.configs"


def config_search_path(config_dirs: Sequence[str | Path] = ()) -> list[str]:
    """The config sources in lookup order: ``config_dirs``, ``./configs`` (when present), the package."""
    sources = []
    for d in config_dirs:
        path = Path(d).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"--config-dir {d}: not a directory")
        sources.append(f"file://{path}")
    repo = Path.cwd() / "configs"
    if repo.is_dir() and f"file://{repo.resolve()}" not in sources:
        sources.append(f"file://{repo.resolve()}")
    sources.append(PACKAGED_CONFIGS)
    return sources


_COMPOSE_SOURCES: ContextVar[tuple[str, ...]] = ContextVar("ls_train_compose_sources", default=())


def compose_sources() -> tuple[str, ...]:
    """The config sources of the composition in progress, first wins (ls-train's search-path
    plugin puts them at the front of Hydra's search path); empty outside :func:`searched_first`."""
    return _COMPOSE_SOURCES.get()


@contextmanager
def searched_first(sources: Sequence[str]) -> Iterator[None]:
    """Within the block, :func:`compose_sources` is ``sources``; the value before is put back."""
    token = _COMPOSE_SOURCES.set(tuple(sources))
    try:
        yield
    finally:
        _COMPOSE_SOURCES.reset(token)
