"""The volume catalog: which volumes exist, where their files are, and their metadata.

A catalog lives in an SQLite file (default ``sqlite:///catalog.sqlite``) or a PostgreSQL
database (``postgresql://user:password@host:port/dbname``; ``pip install 'ls-data[postgres]'``).
Opening a catalog that does not exist is a :class:`CatalogNotFoundError`; only writers pass
``create=True`` (``ls-data catalog register``, ``ls-data synth``).

Example:
    >>> from ls_data.catalog import Catalog, Selection
    >>> url = "sqlite:///data/catalog.sqlite"
    >>> with Catalog(url, roots=["data"], create=True) as catalog:  # doctest: +SKIP
    ...     catalog.register_folder("data/tiff", grade="gold", split="train")
    ...     train = catalog.volumes(Selection(splits=["train"], grades=["gold"]))
    ...     image_path, label_path = catalog.resolve(train[0])
"""

from __future__ import annotations

from ls_data.catalog.core import Catalog
from ls_data.catalog.errors import (
    CatalogError,
    CatalogNotFoundError,
    DuplicateVolumeError,
    MissingVolumeFileError,
    RegisterError,
    VolumeNotFoundError,
)
from ls_data.catalog.records import FORMATS, Selection, VolumeRecord
from ls_data.catalog.register import RegisterReport, SkippedVolume
from ls_data.catalog.schema import SCHEMA_VERSION
from ls_data.catalog.url import mask_url

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "Catalog",
    "CatalogError",
    "CatalogNotFoundError",
    "DuplicateVolumeError",
    "MissingVolumeFileError",
    "RegisterError",
    "RegisterReport",
    "Selection",
    "SkippedVolume",
    "VolumeNotFoundError",
    "VolumeRecord",
    "mask_url",
]
