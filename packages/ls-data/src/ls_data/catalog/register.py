"""Registering a folder of volumes into a catalog.

A folder holds any mix of

- TIFF pairs ``<name>_image.tif`` + ``<name>_labels.tif`` (``.tiff`` also accepted), and
- OME-Zarr groups ``<name>.ome.zarr`` whose instance labels are the ``labels/<label name>`` group
  (the label name given, else ``cells`` when the ``labels`` group lists it, else the first
  one it lists).

Each volume's shape, channel count and spacing are read through :mod:`ls_data.io` (metadata
only), and the image and label spatial shapes must agree. A label volume of a signed integer
dtype must not hold negative ids: it is read block by block (blocks of at most
:data:`LABEL_BLOCK_VOXELS` voxels, whatever its size) to check. With ``recursive=True`` sub-folders
are searched too (not the inside of ``.ome.zarr`` groups) and a volume's name is prefixed with
its sub-folder (``sub/dir/<name>``), so names stay unique.

Paths inside the catalog root are stored relative to it (the catalog can move with its data);
others are stored absolute. A path outside the catalog's roots is a bad volume.

Re-registering: a name that is already in the catalog with the same image and label URIs is
*updated* (shape, channels, spacing and format re-read; grade and split replaced when given;
given attributes merged into the stored ones). The same name pointing to other files is a bad
volume (a name collision), never silently re-pointed.

Nothing is written unless every volume is good, or ``skip_bad=True``, in which case bad
volumes are left out with a warning each and listed with their reasons in the report.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ls_data.catalog.errors import CatalogError, RegisterError
from ls_data.errors import DataError

if TYPE_CHECKING:
    from ls_data.catalog.core import Catalog

__all__ = ["RegisterReport", "SkippedVolume", "register_folder"]

#: Signed label volumes are read in blocks of at most about this many voxels at registration to
#: reject negative ids (unsigned ones need no read), so memory stays bounded at any volume size.
LABEL_BLOCK_VOXELS = 2**23

_TIFF_PATTERN = re.compile(r"^(?P<name>.+)_(?P<kind>image|labels)\.(?P<ext>(?:ome\.)?tiff?)$", re.IGNORECASE)
_ZARR_SUFFIX = ".ome.zarr"
_DEFAULT_LABEL_NAME = "cells"


@dataclass(frozen=True)
class SkippedVolume:
    """A volume that ``register_folder`` left out, and why.

    Attributes:
        name: The volume name it would have had.
        path: The image file / group (or the stray label file).
        reason: What is wrong, naming the file(s).
    """

    name: str
    path: Path
    reason: str


@dataclass
class RegisterReport:
    """What ``register_folder`` did.

    Attributes:
        folder: The folder registered.
        added: Names of newly added volumes.
        updated: Names of volumes that were already registered with the same files and were
            refreshed.
        skipped: Bad volumes left out (only with ``skip_bad=True``).
        ids: Catalog id of every added or updated volume, by name.
    """

    folder: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[SkippedVolume] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: counts of added, updated and skipped volumes."""
        return (
            f"{self.folder}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.skipped)} skipped"
        )


@dataclass(frozen=True)
class _Candidate:
    name: str
    format: str
    image: Path
    labels: Path | None
    problem: str | None = None


def _group_attributes(group: Path, what: str) -> Iterator[dict[str, Any]]:
    """The attributes of each metadata file an OME-Zarr group has (``.zattrs``, then ``zarr.json``).

    The NGFF 0.5 ``ome`` block is unwrapped. ``what`` names the metadata in the error.

    Raises:
        DataError: A metadata file cannot be read or parsed.
    """
    for meta_name in (".zattrs", "zarr.json"):
        meta = group / meta_name
        if not meta.is_file():
            continue
        try:
            attrs = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read OME-Zarr {what} metadata {str(meta)!r}: {exc}") from None
        if meta_name == "zarr.json":
            attrs = attrs.get("attributes", {})
        yield attrs.get("ome", attrs)


def _labels_listed(labels_dir: Path) -> list[str]:
    """Label names listed in an OME-Zarr ``labels`` group's attributes (NGFF 0.4 or 0.5)."""
    for attrs in _group_attributes(labels_dir, "labels"):
        listed = attrs.get("labels")
        if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
            return listed
    return []


def _zarr_candidate(name: str, group: Path, label_name: str | None) -> _Candidate:
    def bad(reason: str) -> _Candidate:
        return _Candidate(name, "ome-zarr", group, None, reason)

    labels_dir = group / "labels"
    if not labels_dir.is_dir():
        return bad(f"OME-Zarr group {str(group)!r} has no labels/ group")
    if label_name is not None:
        if not (labels_dir / label_name).is_dir():
            present = sorted(p.name for p in labels_dir.iterdir() if p.is_dir())
            return bad(
                f"OME-Zarr group {str(group)!r} has no label image {label_name!r} (present: {present})"
            )
        return _Candidate(name, "ome-zarr", group, labels_dir / label_name)
    try:
        listed = _labels_listed(labels_dir)
    except DataError as exc:
        return bad(str(exc))
    if not listed:
        return bad(f"{str(labels_dir)!r} lists no label images in its 'labels' attribute; pass a label name")
    chosen = _DEFAULT_LABEL_NAME if _DEFAULT_LABEL_NAME in listed else listed[0]
    return _Candidate(name, "ome-zarr", group, labels_dir / chosen)


def _tiff_candidate(name: str, images: list[Path], labels: list[Path]) -> _Candidate:
    stem = name.rsplit("/", 1)[-1]
    if len(images) > 1 or len(labels) > 1:
        shown = [str(p) for p in images + labels]
        return _Candidate(
            name, "tiff", (images or labels)[0], None, f"ambiguous TIFF files for one volume: {shown}"
        )
    if not images:
        reason = f"label file {str(labels[0])!r} has no image file '{stem}_image.tif' beside it"
        return _Candidate(name, "tiff", labels[0], None, reason)
    if not labels:
        reason = f"image file {str(images[0])!r} has no label file '{stem}_labels.tif' beside it"
        return _Candidate(name, "tiff", images[0], None, reason)
    return _Candidate(name, "tiff", images[0], labels[0])


def _discover(folder: Path, *, recursive: bool, label_name: str | None) -> list[_Candidate]:
    """Every volume of ``folder`` (bad ones carry their problem), sorted by name."""
    candidates: list[_Candidate] = []
    folders = [folder]
    while folders:
        current = folders.pop(0)
        prefix = current.relative_to(folder).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        tiffs: dict[str, dict[str, list[Path]]] = {}
        for entry in sorted(current.iterdir()):
            if entry.is_dir():
                if entry.name.lower().endswith(_ZARR_SUFFIX):
                    name = prefix + entry.name[: -len(_ZARR_SUFFIX)]
                    candidates.append(_zarr_candidate(name, entry, label_name))
                elif recursive and not entry.name.lower().endswith(".zarr"):
                    folders.append(entry)
                continue
            match = _TIFF_PATTERN.match(entry.name)
            if match:
                kinds = tiffs.setdefault(prefix + match["name"], {"image": [], "labels": []})
                kinds[match["kind"].lower()].append(entry)
        candidates += [_tiff_candidate(name, k["image"], k["labels"]) for name, k in tiffs.items()]
    seen: dict[str, _Candidate] = {}
    out = []
    for cand in sorted(candidates, key=lambda c: (c.name, c.format)):
        if cand.name in seen and cand.problem is None:
            reason = (
                f"volume name {cand.name!r} is used by both {str(seen[cand.name].image)!r} and "
                f"{str(cand.image)!r}"
            )
            cand = _Candidate(cand.name, cand.format, cand.image, cand.labels, reason)
        seen.setdefault(cand.name, cand)
        out.append(cand)
    return out


def _omero_channel_names(group: Path, count: int) -> list[str] | None:
    """Channel labels from OME-Zarr ``omero`` metadata, when there is one per channel."""
    try:
        for attrs in _group_attributes(group, "image"):
            channels = attrs.get("omero", {}).get("channels", [])
            names = [c.get("label") for c in channels if isinstance(c, dict)]
            named = len(names) == count and all(isinstance(n, str) and n for n in names)
            if named and len(set(names)) == count:
                return names
    except DataError:
        return None  # the reader reports unreadable metadata; names are optional
    return None


def _close(reader: Any) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()


def _label_blocks(
    shape: tuple[int, ...], chunks: tuple[int, int, int] | None, budget: int
) -> Iterator[tuple[slice, slice, slice]]:
    """Windows covering ``shape`` (Z, Y, X) of at most ``budget`` voxels (one at least): whole
    planes stacked in z where a plane fits, else rows of a plane, else pieces of a row; a side
    that spans a storage chunk (of ``chunks``, where known) spans a whole number of them."""
    step, rest = [1, 1, 1], max(1, budget)
    for axis in (2, 1, 0):
        side = max(1, min(shape[axis], rest))
        if chunks and side >= chunks[axis]:
            side = side // chunks[axis] * chunks[axis]
        step[axis] = side
        rest = max(1, rest // side)
    for z0 in range(0, shape[0], step[0]):
        for y0 in range(0, shape[1], step[1]):
            for x0 in range(0, shape[2], step[2]):
                starts = (z0, y0, x0)
                yield tuple(slice(a, min(a + k, n)) for a, k, n in zip(starts, step, shape, strict=True))


def _check_label_ids(labels: Any, path: Path, shape: tuple[int, ...]) -> None:
    """Raise DataError when a signed label volume holds negative ids.

    Unsigned dtypes cannot; signed volumes of any size are read in blocks of at most about
    :data:`LABEL_BLOCK_VOXELS` voxels (:func:`_label_blocks`), so memory stays bounded.
    """
    import numpy as np  # the catalog itself imports no numpy; reading a volume does anyway

    dtype = np.dtype(labels.dtype)
    if not np.issubdtype(dtype, np.signedinteger):
        return
    for window in _label_blocks(shape, labels.chunks, LABEL_BLOCK_VOXELS):
        block = np.asarray(labels.read(window))
        low = int(block.min()) if block.size else 0
        if low < 0:
            where = ", ".join(f"{ax} {w.start}..{w.stop - 1}" for ax, w in zip("zyx", window, strict=True))
            raise DataError(
                f"label volume {str(path)!r} ({dtype}) holds negative ids (min {low} in {where}); "
                "instance ids must be >= 0 (0 = background)"
            )


def _read_metadata(cand: _Candidate) -> dict[str, Any]:
    """Shape, channel names and spacing of a candidate; DataError when unreadable or inconsistent."""
    from ls_data.io import open_image, open_labels

    assert cand.labels is not None
    image = open_image(str(cand.image))
    try:
        labels = open_labels(str(cand.labels))
        try:
            shape = tuple(int(v) for v in image.shape)
            label_shape = tuple(int(v) for v in labels.shape)
            if shape[1:] != label_shape:
                raise DataError(
                    f"image {str(cand.image)!r} has spatial shape (Z, Y, X)={shape[1:]} but labels "
                    f"{str(cand.labels)!r} have shape {label_shape}"
                )
            spacing = tuple(float(v) for v in image.spacing)
            _check_label_ids(labels, cand.labels, label_shape)
        finally:
            _close(labels)
    finally:
        _close(image)
    names = _omero_channel_names(cand.image, shape[0]) if cand.format == "ome-zarr" else None
    return {"shape": shape, "channels": names or shape[0], "spacing": spacing}


def _stored_uri(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when inside it, else absolute (POSIX separators)."""
    absolute = path.absolute()
    if root is not None:
        for p, r in ((absolute, root.absolute()), (absolute.resolve(), root.resolve())):
            if p.is_relative_to(r):
                return p.relative_to(r).as_posix()
    return absolute.as_posix()


def register_folder(
    catalog: Catalog,
    folder: str | Path,
    *,
    grade: str | None = None,
    split: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    skip_bad: bool = False,
    recursive: bool = False,
    label_name: str | None = None,
) -> RegisterReport:
    """Discover the volumes of ``folder`` and add (or refresh) them in ``catalog``.

    Args:
        catalog: The catalog to write to.
        folder: Folder with TIFF pairs and/or ``.ome.zarr`` groups.
        grade: Quality grade for every volume registered.
        split: Split for every volume registered.
        attributes: Attributes for every volume registered.
        skip_bad: Leave bad volumes out with a warning instead of failing.
        recursive: Also search sub-folders (names get the sub-folder as prefix).
        label_name: OME-Zarr label image to use (default: ``cells`` if listed, else the first
            listed).

    Returns:
        The report of added, updated and skipped volumes.

    Raises:
        CatalogError: ``folder`` is not a folder or holds no volumes.
        RegisterError: Bad volumes were found and ``skip_bad`` is False (nothing is written);
            the message lists each with its reason.
    """
    from ls_data.catalog.core import _row_values  # shared validation of a row's fields
    from ls_data.io import resolve_uri

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CatalogError(f"register_folder: {str(folder)!r} is not a folder")
    candidates = _discover(folder, recursive=recursive, label_name=label_name)
    if not candidates:
        raise CatalogError(
            f"register_folder: no volumes in {str(folder)!r} (expected <name>_image.tif + <name>_labels.tif "
            f"pairs or <name>.ome.zarr groups{'' if recursive else '; use recursive=True for sub-folders'})"
        )
    report = RegisterReport(folder=folder.absolute())
    problems: list[SkippedVolume] = []
    inserts: list[tuple[str, list[Any]]] = []
    updates: list[tuple[str, int, list[Any]]] = []
    for cand in candidates:
        reason = cand.problem
        if reason is None:
            try:
                assert cand.labels is not None
                for path in (cand.image, cand.labels):
                    resolve_uri(str(path.absolute()), roots=catalog.roots or None)
                meta = _read_metadata(cand)
                image_uri = _stored_uri(cand.image, catalog.root)
                label_uri = _stored_uri(cand.labels, catalog.root)
                existing = catalog._find(cand.name)
                if existing is not None and (existing.image_uri, existing.label_uri) != (
                    image_uri,
                    label_uri,
                ):
                    raise CatalogError(
                        f"volume name {cand.name!r} is already in the catalog (id {existing.id}) for image "
                        f"{existing.image_uri!r} and labels {existing.label_uri!r}, not {image_uri!r}"
                    )
                merged = dict(existing.attributes) if existing is not None else {}
                merged.update(attributes or {})
                values = _row_values(
                    name=cand.name,
                    image_uri=image_uri,
                    label_uri=label_uri,
                    format=cand.format,
                    shape=meta["shape"],
                    channels=meta["channels"],
                    spacing=meta["spacing"],
                    grade=grade if grade is not None or existing is None else existing.grade,
                    split=split if split is not None or existing is None else existing.split,
                    attributes=merged,
                )
            except (DataError, OSError) as exc:
                reason = str(exc)
            else:
                if existing is None:
                    inserts.append((cand.name, values))
                else:
                    updates.append((cand.name, existing.id, values))
                continue
        problems.append(SkippedVolume(cand.name, cand.image, reason))
    if problems and not skip_bad:
        listed = "; ".join(f"{p.name!r}: {p.reason}" for p in problems)
        raise RegisterError(
            f"register_folder {str(folder)!r}: {len(problems)} bad volume(s), nothing registered "
            f"(skip_bad=True leaves them out): {listed}",
            [(p.name, str(p.path), p.reason) for p in problems],
        )
    for problem in problems:
        warnings.warn(f"skipping volume {problem.name!r}: {problem.reason}", UserWarning, stacklevel=3)
    report.skipped = problems
    report.ids = catalog._write_volumes(inserts, updates)
    report.added = [name for name, _ in inserts]
    report.updated = [name for name, _, _ in updates]
    return report
