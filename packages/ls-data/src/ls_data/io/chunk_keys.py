"""Chunk file names of stored Zarr arrays: the key layout from the array's metadata, a chunk's
key, and the chunks whose files exist. Used by the OME-Zarr reader (missing-chunk checks) and the
streaming writers (which chunks were written), also on arrays other tools wrote."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ls_data.io.paths import read_json

__all__ = ["ChunkLayout", "chunk_key", "chunk_layout", "present_chunks"]

ChunkLayout = tuple[tuple[str, ...], str]  # (key prefix, separator)


def chunk_layout(array_dir: Path, fmt: int) -> ChunkLayout:
    """How a stored array names its chunk files: ``.zarray``'s ``dimension_separator`` (Zarr v2,
    "." by default: ``z.y.x``) or ``zarr.json``'s ``chunk_key_encoding`` (Zarr v3: ``c/z/y/x`` by
    default, ``z.y.x`` for the "v2" encoding)."""
    if fmt == 2:
        return (), read_json(array_dir / ".zarray").get("dimension_separator") or "."
    encoding = read_json(array_dir / "zarr.json").get("chunk_key_encoding") or {"name": "default"}
    config = encoding.get("configuration") or {}
    if encoding.get("name") == "v2":
        return (), config.get("separator", ".")
    return ("c",), config.get("separator", "/")


def chunk_key(index: Sequence[int], layout: ChunkLayout) -> str:
    """Storage key of the chunk at grid ``index``."""
    prefix, sep = layout
    return sep.join([*prefix, *(str(i) for i in index)])


def present_chunks(array_dir: Path, layout: ChunkLayout, grid: Sequence[int]) -> set[tuple[int, ...]]:
    """Chunk grid indices whose chunk file exists (one directory listing per chunk row, or one
    listing in all for flat "."-separated keys)."""
    prefix, sep = layout
    present: set[tuple[int, ...]] = set()
    if sep != "/":
        try:
            names = [e.name for e in os.scandir(array_dir) if e.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            return present
        for name in names:
            parts = name.split(sep)
            if tuple(parts[: len(prefix)]) != prefix:
                continue
            parts = parts[len(prefix) :]
            if len(parts) == len(grid) and all(p.isdigit() for p in parts):
                index = tuple(int(p) for p in parts)
                if all(i < n for i, n in zip(index, grid, strict=True)):
                    present.add(index)
        return present
    last = len(grid) - 1

    def walk(folder: str, parent: tuple[int, ...]) -> None:
        depth = len(parent)
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) >= grid[depth]:
                continue
            index = (*parent, int(entry.name))
            if depth == last:
                if entry.is_file():
                    present.add(index)
            elif entry.is_dir():
                walk(entry.path, index)

    walk(str(array_dir.joinpath(*prefix)), ())
    return present
