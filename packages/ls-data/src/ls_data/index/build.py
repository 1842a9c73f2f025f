"""Build (or reuse) a crop index from a catalog selection or a list of volumes.

The build reads each label volume once in z-slabs for the whole-instance statistics, then
reads the label window of every crop that can hold enough instances; the image is only probed
(its first and last voxel) to catch unreadable or truncated files. Everything is written to
``<index>.tmp-<host>-<pid>`` and moved over ``<index>`` with ``os.replace`` when complete, so an
interrupted build leaves no index (and removes its temporary file unless the process is
killed outright); the next build of the same index on that host removes the temporary files of
processes that are gone. An empty selection is an error: an index is never replaced by an
empty one.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import socket
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ls_core import pid_alive
from ls_core.faults import fault_point
from ls_data.errors import DataError
from ls_data.index.criteria import CropCriteria, candidate_count, select_instances
from ls_data.index.distributed import RankInfo, barrier, rank_info, wait_for_index
from ls_data.index.fingerprint import compute_fingerprint, source_state
from ls_data.index.grid import Triple, as_triple, crop_origins
from ls_data.index.reader import CropIndex, read_meta
from ls_data.index.schema import SCHEMA_VERSION, create_schema
from ls_data.index.stats import stream_instance_stats
from ls_data.io import classes_sidecar_path, open_image, open_labels
from ls_data.io.omezarr import OmeZarrVolumeReader

if TYPE_CHECKING:
    from ls_data.catalog import Catalog, Selection, VolumeRecord

__all__ = ["CropIndexConfig", "SkippedVolumeWarning", "VolumeSource", "build_crop_index"]

log = logging.getLogger(__name__)


class SkippedVolumeWarning(UserWarning):
    """A bad volume was left out of the index because ``skip_bad_volumes`` is set."""


@dataclass(frozen=True)
class VolumeSource:
    """A volume to index, with resolved paths.

    Args:
        name: Volume name (unique within one index).
        image_path: Image file (``.tif``) or OME-Zarr image group.
        label_path: Label file (``.tif``) or OME-Zarr label group.
        catalog_id: Its catalog id, when it comes from a catalog.
        expected_shape: ``(C, Z, Y, X)`` the catalog recorded; the files must agree.
        error: Why the volume cannot be used (set when resolving its catalog row failed).
    """

    name: str
    image_path: Path
    label_path: Path
    catalog_id: int | None = None
    expected_shape: tuple[int, ...] | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "label_path", Path(self.label_path))

    def state(self) -> list[Any]:
        """The fingerprint contribution of the volume's files: image, labels and, for a label
        TIFF, its ``<name>_classes.json`` (classes of an OME-Zarr live in its fingerprinted attributes)."""
        state = [self.name, self.catalog_id, source_state(self.image_path), source_state(self.label_path)]
        if not self.label_path.is_dir():
            state.append(source_state(classes_sidecar_path(self.label_path)))
        return state


@dataclass(frozen=True)
class CropIndexConfig:
    """Parameters that define an index (all of them enter its fingerprint but ``slab_size``).

    Args:
        crop_shape: ``(z, y, x)`` crop size (an int means the same on every axis).
        stride: ``(z, y, x)`` step between crops; None = ``crop_shape`` (no overlap).
        channels: Channel indices to read; None = every channel (all volumes must then have
            the same number of channels).
        min_instance_volume: See :class:`~ls_data.index.criteria.CropCriteria`.
        min_visible_fraction: See :class:`~ls_data.index.criteria.CropCriteria`.
        min_visible_voxels: See :class:`~ls_data.index.criteria.CropCriteria`.
        min_instances_per_crop: See :class:`~ls_data.index.criteria.CropCriteria`.
        skip_bad_volumes: Leave unreadable / inconsistent volumes out (with a warning and a line
            in the report) instead of failing.
        allow_missing_chunks: OME-Zarr: read absent chunk files as the array's fill value
            (zarr-python does not store chunks that hold only the fill value) instead of failing
            on them as on an incomplete copy. Stored in the index, so its datasets read alike.
        slab_size: z-planes per read in the whole-volume pass (memory bound; not in the fingerprint).
    """

    crop_shape: Triple
    stride: Triple | None = None
    channels: tuple[int, ...] | None = None
    min_instance_volume: int = 1
    min_visible_fraction: float = 0.0
    min_visible_voxels: int = 1
    min_instances_per_crop: int = 1
    skip_bad_volumes: bool = False
    allow_missing_chunks: bool = False
    slab_size: int = 16
    criteria: CropCriteria = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        crop = as_triple(self.crop_shape, "crop_shape")
        object.__setattr__(self, "crop_shape", crop)
        object.__setattr__(self, "stride", crop if self.stride is None else as_triple(self.stride, "stride"))
        if self.channels is not None:
            channels = tuple(int(c) for c in self.channels)
            if not channels or min(channels) < 0 or len(set(channels)) != len(channels):
                raise DataError(f"channels must be distinct indices >= 0, got {list(self.channels)}")
            object.__setattr__(self, "channels", channels)
        if not isinstance(self.slab_size, int) or self.slab_size < 1:
            raise DataError(f"slab_size must be an int >= 1, got {self.slab_size!r}")
        criteria = CropCriteria(
            min_instance_volume=self.min_instance_volume,
            min_visible_fraction=self.min_visible_fraction,
            min_visible_voxels=self.min_visible_voxels,
            min_instances_per_crop=self.min_instances_per_crop,
        )
        object.__setattr__(self, "criteria", criteria)

    def params(self) -> dict[str, Any]:
        """The JSON-able parameters stored in the index and hashed into its fingerprint."""
        params = asdict(self)
        params.pop("criteria")
        params.pop("slab_size")
        params["crop_shape"] = list(self.crop_shape)
        params["stride"] = list(self.stride)  # type: ignore[arg-type]
        params["channels"] = None if self.channels is None else list(self.channels)
        params["schema_version"] = SCHEMA_VERSION
        return params


def _sources_from_catalog(
    catalog: Catalog | str, selection: Selection | None, roots: Sequence[Path], index_path: Path
) -> list[VolumeSource]:
    from ls_data.catalog import Catalog

    owned = not isinstance(catalog, Catalog)
    cat = Catalog(catalog, roots=roots) if owned else catalog  # a reader: never creates a catalog
    try:
        records = cat.volumes(selection)
        if not records:
            raise _no_volumes_error(cat, selection, index_path)
        return [_source_of_record(cat, record) for record in records]
    finally:
        if owned:
            cat.close()


def _source_of_record(cat: Catalog, record: VolumeRecord) -> VolumeSource:
    try:
        image_path, label_path = cat.resolve(record, must_exist=False)
    except DataError as exc:  # outside the roots, or a relative URI without a root
        return VolumeSource(
            record.name, Path(record.image_uri), Path(record.label_uri), record.id, error=str(exc)
        )
    return VolumeSource(
        name=record.name,
        image_path=Path(image_path),
        label_path=Path(label_path),
        catalog_id=record.id,
        expected_shape=tuple(record.shape) if record.shape else None,
    )


def _no_volumes_error(cat: Catalog, selection: Selection | None, index_path: Path) -> DataError:
    """The error for a selection that matches no volume: names the catalog, the selection, and
    the splits and grades the catalog does have."""
    untouched = f"crop index {str(index_path)!r} not written"
    everything = cat.volumes()
    if not everything:
        return DataError(
            f"catalog {cat.safe_url!r} holds no volumes, nothing to index ({untouched}); register "
            f"volumes with 'ls-data catalog register FOLDER --catalog {cat.safe_url}'"
        )
    wanted = {k: v for k, v in selection.to_dict().items() if v is not None} if selection else {}
    splits = sorted({r.split for r in everything}, key=lambda v: (v is None, v or ""))
    grades = sorted({r.grade for r in everything}, key=lambda v: (v is None, v or ""))
    return DataError(
        f"no volume of catalog {cat.safe_url!r} matches the selection {wanted} ({untouched}); the "
        f"catalog's {len(everything)} volume(s) have splits {splits} and grades {grades}"
    )


def _as_source(volume: Any, roots: Sequence[Path]) -> VolumeSource:
    """A :class:`VolumeSource` as is, or one made from a catalog ``VolumeRecord``."""
    if isinstance(volume, VolumeSource):
        return volume
    if not hasattr(volume, "image_uri"):
        raise DataError(
            f"volumes must hold VolumeSource or catalog VolumeRecord items, got {type(volume).__name__}"
        )
    try:
        image_path = volume.image_path(roots or None, must_exist=False)
        label_path = volume.label_path(roots or None, must_exist=False)
    except DataError as exc:
        return VolumeSource(
            volume.name, Path(volume.image_uri), Path(volume.label_uri), volume.id, error=str(exc)
        )
    return VolumeSource(volume.name, image_path, label_path, volume.id, tuple(volume.shape))


def _bad(source: VolumeSource, reason: str) -> DataError:
    return DataError(
        f"volume {source.name!r} (image {str(source.image_path)!r}, "
        f"labels {str(source.label_path)!r}): {reason}"
    )


class _Writer:
    """Inserts the rows of one index database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.next_volume = 0
        self.next_crop = 0

    def volume(self, source: VolumeSource, fmt: str, shape, spacing, channels) -> int:
        vid = self.next_volume
        self.next_volume += 1
        self.conn.execute(
            "INSERT INTO volumes (id, catalog_id, name, image_path, label_path, format, shape, spacing, "
            "channels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                vid,
                source.catalog_id,
                source.name,
                str(source.image_path.resolve()),
                str(source.label_path.resolve()),
                fmt,
                json.dumps([int(s) for s in shape]),
                json.dumps([float(s) for s in spacing]),
                json.dumps(list(channels)),
            ),
        )
        return vid

    def instances(
        self, vid: int, ids: np.ndarray, classes: np.ndarray, boxes: np.ndarray, voxels: np.ndarray
    ):
        rows = np.concatenate([ids[:, None], classes[:, None], boxes, voxels[:, None]], axis=1).tolist()
        self.conn.executemany(
            "INSERT INTO instances (volume_id, label_id, class_id, z1, y1, x1, z2, y2, x2, voxels) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(vid, *row) for row in rows],
        )

    def crop(
        self, vid: int, origin, ids: np.ndarray, classes: np.ndarray, boxes: np.ndarray, visible: np.ndarray
    ):
        cid = self.next_crop
        self.next_crop += 1
        self.conn.execute(
            "INSERT INTO crops (id, volume_id, z, y, x) VALUES (?, ?, ?, ?, ?)", (cid, vid, *map(int, origin))
        )
        rows = np.concatenate([ids[:, None], classes[:, None], boxes, visible[:, None]], axis=1).tolist()
        self.conn.executemany(
            "INSERT INTO crop_instances (crop_id, label_id, class_id, z1, y1, x1, z2, y2, x2, "
            "visible_voxels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(cid, *row) for row in rows],
        )


def _class_array(ids: np.ndarray, classes: dict[int, int], source: VolumeSource) -> np.ndarray:
    out = np.ones(ids.shape, dtype=np.int64)
    for k, label_id in enumerate(ids.tolist()):
        value = classes.get(label_id, 1)
        if int(value) < 1:
            raise _bad(source, f"instance {label_id} has class {value}; classes must be >= 1")
        out[k] = int(value)
    return out


def _index_volume(
    writer: _Writer, source: VolumeSource, config: CropIndexConfig, progress: Callable[[str], None] | None
) -> dict[str, Any]:
    if source.error is not None:
        raise _bad(source, source.error)
    for path in (source.image_path, source.label_path):
        if not path.exists():
            raise _bad(source, f"file {str(path)!r} does not exist")
    try:
        image = open_image(source.image_path, allow_missing_chunks=config.allow_missing_chunks)
        labels = open_labels(source.label_path, allow_missing_chunks=config.allow_missing_chunks)
    except DataError as exc:
        raise _bad(source, str(exc)) from exc
    n_channels, *spatial = (int(s) for s in image.shape)
    if tuple(int(s) for s in labels.shape) != tuple(spatial):
        raise _bad(
            source, f"image shape (C, Z, Y, X) {tuple(image.shape)} does not match label shape {labels.shape}"
        )
    if source.expected_shape is not None and tuple(source.expected_shape) != tuple(image.shape):
        raise _bad(
            source,
            f"the catalog records shape {source.expected_shape} but the image has {tuple(image.shape)}",
        )
    channels = tuple(range(n_channels)) if config.channels is None else config.channels
    if max(channels) >= n_channels:
        raise _bad(source, f"channels {list(channels)} out of range for an image with {n_channels} channels")
    origins = crop_origins(spatial, config.crop_shape, config.stride, volume_name=source.name)
    try:
        # Probe the first and last voxel: catches truncated and unreadable image files early;
        # every chunk file of an OME-Zarr image must be there (labels are read whole below).
        if isinstance(image, OmeZarrVolumeReader):
            image.check_chunks()
        last = tuple(slice(s - 1, s) for s in spatial)
        image.read((slice(0, 1), slice(0, 1), slice(0, 1)), channels=[channels[0]])
        image.read(last, channels=[channels[-1]])  # type: ignore[arg-type]
        whole = stream_instance_stats(labels.read, tuple(spatial), slab_size=config.slab_size)  # type: ignore[arg-type]
        classes = _class_array(whole.ids, labels.classes(), source)
    except DataError as exc:
        raise _bad(source, str(exc)) from exc
    vid = writer.volume(source, image.format, image.shape, image.spacing, channels)
    writer.instances(vid, whole.ids, classes, whole.boxes, whole.voxels)
    criteria = config.criteria
    kept = 0
    listed = 0
    for origin in origins:
        needed = criteria.min_instances_per_crop
        if (
            needed
            and candidate_count(whole, origin, config.crop_shape, criteria.min_instance_volume) < needed
        ):
            continue
        window = tuple(slice(int(o), int(o) + c) for o, c in zip(origin, config.crop_shape, strict=True))
        try:
            found = select_instances(np.asarray(labels.read(window)), whole, criteria)
        except DataError as exc:
            raise _bad(source, str(exc)) from exc
        if len(found) < needed:
            continue
        found_classes = classes[np.searchsorted(whole.ids, found.ids)]
        writer.crop(vid, origin, found.ids, found_classes, found.boxes, found.visible)
        kept += 1
        listed += len(found)
    if progress is not None:
        progress(f"{source.name}: {kept}/{len(origins)} crops, {len(whole)} instances")
    return {
        "name": source.name,
        "channels": n_channels,
        "instances": len(whole),
        "grid_crops": len(origins),
        "crops": kept,
        "crop_instances": listed,
    }


def _host_tag() -> str:
    """This machine's name as it appears in temporary index file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", socket.gethostname()) or "host"


def _remove_stale_temp_files(path: Path) -> None:
    """Delete ``<index>.tmp-<host>-<pid>`` files (and the older ``<index>.tmp-<pid>``) that killed
    builds on this machine left: those whose process is gone. Files of other machines (a shared
    filesystem) and of live processes are left alone."""
    host = _host_tag()
    prefix = f"{path.name}.tmp-"
    for tmp in path.parent.glob(glob.escape(prefix) + "*"):
        owner, _, pid = tmp.name[len(prefix) :].rpartition("-")
        if not pid.isdigit() or owner not in ("", host) or pid_alive(int(pid)):
            continue
        log.info("removing %s, left by build process %s that no longer runs", tmp, pid)
        tmp.unlink(missing_ok=True)


def _check_indexed(
    volumes: list[dict[str, Any]], skipped: list[dict[str, str]], config: CropIndexConfig, path: Path
) -> None:
    """Raise DataError when the indexed volumes cannot make an index: none left, or channel
    counts that differ while every channel is read."""
    if not volumes:
        reasons = "; ".join(f"{s['name']!r}: {s['reason']}" for s in skipped)
        raise DataError(f"every volume was skipped as bad, crop index {str(path)!r} not written: {reasons}")
    if config.channels is None and len({v["channels"] for v in volumes}) > 1:
        counts = ", ".join(f"{v['name']}: {v['channels']}" for v in volumes)
        raise DataError(
            f"volumes have different channel counts ({counts}); choose the channels to read with `channels`"
        )


def _write_index(
    path: Path,
    sources: list[VolumeSource],
    config: CropIndexConfig,
    fingerprint: str,
    progress: Callable[[str], None] | None,
) -> None:
    """Build the index into a temporary file next to ``path`` and move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    tmp = path.with_name(f"{path.name}.tmp-{_host_tag()}-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    start = time.perf_counter()
    conn = sqlite3.connect(tmp, isolation_level=None)  # transactions are managed below
    try:
        conn.execute("PRAGMA journal_mode = MEMORY")  # the savepoints need a rollback journal
        conn.execute("PRAGMA synchronous = OFF")  # durability comes from os.replace of a closed file
        create_schema(conn)  # executescript: runs outside the transaction
        conn.execute("BEGIN")
        writer = _Writer(conn)
        volumes: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for source in sources:
            conn.execute("SAVEPOINT volume")
            counters = (writer.next_volume, writer.next_crop)
            try:
                volumes.append(_index_volume(writer, source, config, progress))
            except (DataError, OSError) as exc:
                error = exc if isinstance(exc, DataError) else _bad(source, f"{type(exc).__name__}: {exc}")
                if not config.skip_bad_volumes and error is exc:
                    raise
                if not config.skip_bad_volumes:
                    raise error from exc
                # Drop whatever rows of this volume were written before it failed.
                conn.execute("ROLLBACK TO volume")
                writer.next_volume, writer.next_crop = counters
                warnings.warn(f"skipping {error}", SkippedVolumeWarning, stacklevel=3)
                skipped.append({"name": source.name, "reason": str(error)})
            conn.execute("RELEASE volume")
            fault_point("index.build")  # a volume's rows are in the temporary file, the build goes on
        _check_indexed(volumes, skipped, config, path)
        report = {
            "volumes": len(volumes),
            "crops": writer.next_crop,
            "instances": sum(v["instances"] for v in volumes),
            "crop_instances": sum(v["crop_instances"] for v in volumes),
            "skipped_count": len(skipped),
            "skipped": skipped,
            "per_volume": volumes,
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        meta = {
            "fingerprint": fingerprint,
            "params": json.dumps(config.params()),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "report": json.dumps(report),
        }
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
        conn.execute("COMMIT")
        conn.close()
        os.replace(tmp, path)
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise


def build_crop_index(
    *,
    index_path: str | Path,
    config: CropIndexConfig,
    catalog: Catalog | str | None = None,
    selection: Selection | None = None,
    volumes: Sequence[VolumeSource | VolumeRecord] | None = None,
    roots: Sequence[str | Path] = (),
    rebuild: bool = False,
    wait_timeout: float = 3600.0,
    poll_interval: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> CropIndex:
    """Build the crop index of a set of volumes, or reuse it when nothing changed.

    The volumes come from ``catalog`` (a :class:`~ls_data.catalog.Catalog` or its URL) and
    ``selection``, or from ``volumes``. The index is reused when its fingerprint (parameters,
    and path, size and mtime of every source; see :mod:`ls_data.index.fingerprint`) equals the
    current one, and rebuilt otherwise or when ``rebuild`` is set. In a distributed run only
    rank 0 builds; the others wait (see :mod:`ls_data.index.distributed`) and open it read-only
    (with ``rebuild`` and no ``torch.distributed``, a waiting rank may open the previous index
    when its fingerprint is already the expected one: same sources, same parameters).

    Args:
        index_path: The SQLite index file to write.
        config: The crop grid, the channels and the crop criteria (:class:`CropIndexConfig`).
        catalog: Catalog or catalog URL (exclusive with ``volumes``).
        selection: Which catalog volumes to index (None = all).
        volumes: Volumes given directly: :class:`VolumeSource` items (resolved paths), or catalog
            ``VolumeRecord`` items (their URIs resolved and checked against ``roots``).
        roots: Directories catalog paths must stay inside (passed to the catalog).
        rebuild: Rebuild even when the fingerprint matches.
        wait_timeout: Seconds a non-zero rank waits for rank 0's index.
        poll_interval: Seconds between checks while waiting.
        progress: Called with one line per indexed volume.

    Returns:
        The index, opened read-only.

    Raises:
        DataError: A bad volume (names it and its files) unless skipped; a crop larger than a
            volume (names the volume and both shapes); timeout while waiting; no volume to index
            (an empty selection, an empty catalog, or every volume skipped), in which case an
            existing index is left as it was.
        CatalogNotFoundError: ``catalog`` names a catalog that does not exist (none is created).
    """
    if not isinstance(config, CropIndexConfig):
        raise DataError(f"build_crop_index: config must be a CropIndexConfig, got {type(config).__name__}")
    path = Path(index_path)
    sources = _sources(catalog, selection, volumes, [Path(r) for r in roots], path)
    fingerprint = compute_fingerprint(config.params(), [s.state() for s in sources])
    ranks = rank_info()
    if ranks.rank == 0:
        return _build_as_rank_zero(path, sources, config, fingerprint, rebuild, progress, ranks)
    if ranks.torch_distributed:
        return _open_after_barrier(path, fingerprint, ranks.rank)
    return wait_for_index(path, fingerprint, timeout=wait_timeout, poll_interval=poll_interval)


def _sources(
    catalog: Catalog | str | None,
    selection: Selection | None,
    volumes: Sequence[VolumeSource | VolumeRecord] | None,
    roots: Sequence[Path],
    path: Path,
) -> list[VolumeSource]:
    """The volumes to index, from a catalog selection or given directly; names unique."""
    if (catalog is None) == (volumes is None):
        raise DataError("build_crop_index needs exactly one of `catalog` (with `selection`) or `volumes`")
    if catalog is not None:
        sources = _sources_from_catalog(catalog, selection, roots, path)
    else:
        sources = [_as_source(v, roots) for v in volumes]  # type: ignore[union-attr]
        if not sources:
            raise DataError(f"build_crop_index: `volumes` is empty; crop index {str(path)!r} not written")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DataError(f"volume names must be unique within an index, got {names}")
    return sources


def _build_as_rank_zero(
    path: Path,
    sources: list[VolumeSource],
    config: CropIndexConfig,
    fingerprint: str,
    rebuild: bool,
    progress: Callable[[str], None] | None,
    ranks: RankInfo,
) -> CropIndex:
    """Build (or reuse) the index, then release the ranks waiting at the barrier, even on failure."""
    error: BaseException | None = None
    try:
        meta = read_meta(path)
        if rebuild or meta is None or meta.get("fingerprint") != fingerprint:
            log.info("building crop index %s from %d volumes", path, len(sources))
            _write_index(path, sources, config, fingerprint, progress)
        else:
            log.info("reusing crop index %s (fingerprint %s)", path, fingerprint[:12])
    except BaseException as exc:
        error = exc
    if ranks.torch_distributed and ranks.world_size > 1:
        barrier()  # release the waiting ranks even when the build failed
    if error is not None:
        raise error
    return CropIndex.open(path)


def _open_after_barrier(path: Path, fingerprint: str, rank: int) -> CropIndex:
    """A non-zero rank of a torch.distributed run: wait for rank 0 at the barrier, then open."""
    barrier()
    meta = read_meta(path)
    if meta is None or meta.get("fingerprint") != fingerprint:
        raise DataError(
            f"rank {rank}: rank 0 did not produce the crop index {str(path)!r} with the expected "
            "fingerprint (its build failed, or ranks see different files); check rank 0's log"
        )
    return CropIndex.open(path)
