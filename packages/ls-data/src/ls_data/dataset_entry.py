"""A dataset entry ``{name | _target_, **arguments}`` as typed calls: the crop index to build, if
any, then the dataset to open.

An entry of a :class:`~ls_data.dataset.SkittlezDataset` (``name: skittlez``, or a ``_target_`` that
is it or a subclass) may describe the index it opens, as the original system's dataset did. Its
keys are then those of the dataset (``index_path``, ``channels``, ``mask_dtype``,
``allow_missing_chunks``), of :class:`~ls_data.index.CropIndexConfig` (``crop_shape``, ``stride``,
the criteria, ...) and :data:`INDEX_SOURCE_KEYS` of :func:`~ls_data.index.build_crop_index`; each
goes to the call that takes it (``channels`` and ``allow_missing_chunks`` to both). Without
``catalog`` the index at ``index_path`` is opened as it is. Other datasets get their keys as they
are. Nothing here reads or builds a file: :meth:`IndexBuild.build` and :meth:`DatasetEntry.open` do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ls_core import signature_keywords
from ls_data.catalog import Selection
from ls_data.dataset import SkittlezDataset
from ls_data.errors import DataError
from ls_data.index import CropIndex, CropIndexConfig, build_crop_index
from ls_data.registry import RegistryError, _plain, get_dataset, instantiate, load_object

__all__ = ["INDEX_SOURCE_KEYS", "DatasetEntry", "IndexBuild", "parse_dataset_entry"]

INDEX_SOURCE_KEYS = ("catalog", "selection", "roots", "rebuild", "wait_timeout")
"""Keys of a crop dataset entry that say where its index comes from (:func:`build_crop_index`)."""

_CALLER_KEYS = ("transforms", "fingerprint")  # set by the code that opens the dataset, never by an entry


@dataclass(frozen=True)
class IndexBuild:
    """A crop index to build (or reuse) from a catalog selection: :func:`build_crop_index`'s arguments."""

    index_path: Path
    catalog: str
    config: CropIndexConfig
    selection: Selection | None = None
    roots: tuple[str, ...] = ()
    rebuild: bool = False
    wait_timeout: float = 3600.0

    def build(self, progress: Callable[[str], None] | None = None) -> CropIndex:
        """Build or reuse the index (distributed-aware, see :func:`build_crop_index`)."""
        return build_crop_index(
            index_path=self.index_path,
            config=self.config,
            catalog=self.catalog,
            selection=self.selection,
            roots=self.roots,
            rebuild=self.rebuild,
            wait_timeout=self.wait_timeout,
            progress=progress,
        )


@dataclass(frozen=True)
class DatasetEntry:
    """A parsed dataset entry.

    Attributes:
        where: Where the entry sits in its config, for messages (e.g. ``"datasets.database"``).
        entry: ``{name | _target_, **arguments}`` of the dataset itself (the index keys removed).
        index: The index to build before the dataset is opened; None: open it as it is.
    """

    where: str
    entry: dict[str, Any]
    index: IndexBuild | None

    def open(self, transforms: Any = None, fingerprint: str | None = None) -> Dataset:
        """The dataset, with ``transforms`` (nothing passed when None or empty); a crop dataset's
        index must carry ``fingerprint`` when given (see :meth:`~ls_data.index.CropIndex.open`)."""
        extra: dict[str, Any] = {}
        if transforms is not None and len(transforms):
            extra["transforms"] = transforms
        if fingerprint is not None:
            extra["fingerprint"] = fingerprint
        return instantiate(self.entry, kind="dataset", where=self.where, extra=extra or None)


def parse_dataset_entry(entry: Mapping[str, Any], where: str) -> DatasetEntry:
    """Split a dataset entry into the index to build and the dataset to open; opens no file.

    Raises:
        RegistryError: an unknown ``name`` or a bad ``_target_`` (prefixed with ``where``).
        DataError: a malformed entry, an unknown key (the valid ones listed), a key set by the
            caller (``transforms``), ``catalog`` without ``crop_shape``, or a bad grid, criterion or
            selection; the message starts with ``where``.
    """
    if not isinstance(entry, Mapping):
        raise DataError(f"{where} must be a mapping with 'name' or '_target_', got {type(entry).__name__}")
    plain = _plain(entry)
    cls = _dataset_class(plain, where)
    if not (isinstance(cls, type) and issubclass(cls, SkittlezDataset)):
        return DatasetEntry(where, plain, None)
    ident = {k: plain[k] for k in ("name", "_target_") if k in plain}
    arguments = {k: v for k, v in plain.items() if k not in ident}
    opened = _dataset_keys(cls)
    _check_keys(arguments, opened, where, cls.__name__)
    dataset = {**ident, **{k: v for k, v in arguments.items() if k in opened}}
    if arguments.get("catalog") is None:
        return DatasetEntry(where, dataset, None)
    return DatasetEntry(where, dataset, _index_build(arguments, where))


def _dataset_class(entry: Mapping[str, Any], where: str) -> Any:
    """The class an entry names, or None when it names none (``DatasetEntry.open`` then says why)."""
    if ("name" in entry) == ("_target_" in entry):
        return None
    try:
        return get_dataset(entry["name"]) if "name" in entry else load_object(entry["_target_"])
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from exc


def _dataset_keys(cls: type) -> set[str]:
    """The keyword arguments of a crop dataset class that an entry may set."""
    keywords = signature_keywords(cls)
    return set() if keywords is None else set(keywords.valid(given=_CALLER_KEYS))


def _check_keys(arguments: Mapping[str, Any], opened: set[str], where: str, label: str) -> None:
    index_keys = {f.name for f in fields(CropIndexConfig) if f.init} | set(INDEX_SOURCE_KEYS)
    valid = sorted(opened | index_keys)
    for key in arguments:
        if key in _CALLER_KEYS:
            raise DataError(f"{where}: key {key!r} is set by the caller and must not appear in the config")
        if key not in valid:
            raise DataError(f"{where}.{key}: unknown key of a {label} entry; valid keys: {', '.join(valid)}")


def _index_build(arguments: Mapping[str, Any], where: str) -> IndexBuild:
    if arguments.get("crop_shape") is None:
        raise DataError(f"{where}: crop_shape is required to build an index from a catalog")
    if "index_path" not in arguments:
        raise DataError(f"{where}: missing required key 'index_path'")
    names = {f.name for f in fields(CropIndexConfig) if f.init}
    try:
        config = CropIndexConfig(**{k: v for k, v in arguments.items() if k in names})
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {exc}") from None
    source = {k: arguments[k] for k in INDEX_SOURCE_KEYS if k in arguments and k != "selection"}
    source["catalog"] = str(source["catalog"])
    source["roots"] = tuple(str(r) for r in source.get("roots", ()))
    return IndexBuild(
        index_path=Path(arguments["index_path"]),
        config=config,
        selection=_selection(arguments.get("selection"), where),
        **source,
    )


def _selection(selection: Any, where: str) -> Selection | None:
    if selection is None or isinstance(selection, Selection):
        return selection
    if isinstance(selection, Mapping):
        try:
            return Selection(**{str(k): v for k, v in selection.items()})
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: bad selection {dict(selection)!r}: {exc}") from None
    raise DataError(f"{where}: selection must be a Selection or a mapping, got {type(selection).__name__}")
