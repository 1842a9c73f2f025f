"""Fingerprint of an index: its parameters and the state of its source files.

A source file contributes its resolved path, size and ``mtime_ns``. An OME-Zarr / Zarr
directory contributes, for every node below it, the stats of its metadata files (``.zgroup``,
``.zattrs``, ``.zarray``, ``.zmetadata``, ``zarr.json``) and, for every array, the sorted listing
of the array directory's top-level entries with the directory's ``mtime_ns``. Chunk files are
not stat-ed one by one (a terabyte volume has millions): rewriting a chunk in place without
touching any metadata file or the array directory is not detected; use ``rebuild=True`` then.
A missing path contributes ``"missing"``, so the index is rebuilt once it appears.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["compute_fingerprint", "source_state"]

_ZARR_METADATA = (".zgroup", ".zattrs", ".zarray", ".zmetadata", "zarr.json")


def _file_state(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def _is_array_dir(path: Path) -> bool:
    if (path / ".zarray").is_file():
        return True
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("node_type") == "array"
        except (OSError, ValueError):
            return False
    return False


def _zarr_state(root: Path) -> list[Any]:
    state: list[Any] = []
    pending = [root]
    while pending:
        node = pending.pop()
        for name in _ZARR_METADATA:
            meta = node / name
            if meta.is_file():
                state.append(_file_state(meta))
        if _is_array_dir(node):
            state.append([str(node), node.stat().st_mtime_ns, sorted(os.listdir(node))])
            continue  # chunk directories below an array are not walked
        pending.extend(sorted(p for p in node.iterdir() if p.is_dir()))
    return sorted(state, key=lambda item: item[0])


def source_state(path: str | Path) -> list[Any]:
    """The fingerprint contribution of one source file or Zarr directory (see module doc)."""
    resolved = Path(path).resolve()
    if not resolved.exists():
        return [str(resolved), "missing"]
    if resolved.is_dir():
        return [str(resolved), "dir", _zarr_state(resolved)]
    return _file_state(resolved)


def compute_fingerprint(params: Mapping[str, Any], sources: list[Any]) -> str:
    """SHA-256 hex digest of the JSON of the parameters and the source states."""
    payload = json.dumps({"params": params, "sources": sources}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
