"""``run_prediction``: a whole volume in, a stitched OME-Zarr label image and a table out.

Passes:

1. **Tiles** (the expensive one, in this process or spread over Ray actors): every tile not
   yet in the work folder is read, segmented and stored (:mod:`ls_train.predict.tilestore`).
2. **Stitch** (this process): instances of neighbouring tiles are compared on their shared
   regions and merged into objects (:mod:`ls_train.predict.stitch`).
3. **Write** (this process or Ray tasks): chunk-aligned output blocks are painted from the
   stored tiles and written; then the label pyramid, the metadata and the table.

Before any of them, and before the work folder or the output is created, bad input is refused
with a message naming the file and the key to change (:mod:`ls_train.predict.checks`): a 2-D
image, a ``predict.channels`` index the input lacks, a channel count the model does not take, an
output, work folder or table in a folder that is not writable, and NaN or infinite values in a
floating-point volume (scanned up front when it is small, else found tile by tile in pass 1). A
run that fails after creating the work folder leaves nothing that refuses the corrected rerun: a
work folder without finished tiles is removed, and one stopped on NaN values is replaced by a run
of another plan (:meth:`~ls_train.predict.tilestore.TileStore.replaceable`).

Memory is bounded by a batch of tiles (pass 1) and a block (pass 3), never by the volume.
A new output is assembled inside the work folder and moved into place at the end; labels
written into the input image become listed in ``labels/`` only at the end. So an interrupted run
never leaves an output that looks complete, and re-running the same command resumes it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ls_train.config import ConfigError
from ls_train.predict.checks import (
    NonFiniteInputError,
    check_model_channels,
    check_writable,
    model_in_channels,
    scan_finite,
)
from ls_train.predict.config import PredictConfig, predict_config
from ls_train.predict.progress import Progress
from ls_train.predict.stitch import StitchPlan, plan_stitch
from ls_train.predict.table import StatsAccumulator, write_table
from ls_train.predict.tilestore import TileStore
from ls_train.predict.tiling import Box, TileGrid
from ls_train.predict.volume import InputVolume, open_input
from ls_train.predict.workers import PaintJob, SegmenterSpec, TileWorker, paint_blocks
from ls_train.ray_session import ray_session
from ls_train.storage import StorageFullError, no_space_left

__all__ = ["PredictionResult", "run_prediction"]

MAX_LABEL_PROPERTIES = 100_000
"""Up to this many objects, their class and score are also stored as NGFF label properties."""


@dataclass
class PredictionResult:
    """What :func:`run_prediction` did.

    Attributes:
        output: The OME-Zarr image group holding the labels.
        labels: The label image group (``<output>/labels/<name>``).
        table: The per-instance table.
        objects: Objects in the label image.
        tiles: Tiles of the grid; ``tiles_resumed`` of them were already in the work folder.
        tiles_capped: Tiles in which the detector's detection cap dropped detections.
        forward_seconds: Sum over this run's tiles of the detector's forward time (the whole
            segmenter call for a segmenter without a model).
        seconds: Wall time per pass (``tiles``, ``stitch``, ``write``, ``total``).
        voxels: Voxels of the predicted volume.
    """

    output: Path
    labels: Path
    table: Path
    objects: int
    tiles: int
    tiles_resumed: int
    forward_seconds: float
    voxels: int
    seconds: dict[str, float] = field(default_factory=dict)
    tiles_capped: int = 0


def _is_zarr_group(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in (".zgroup", ".zattrs", "zarr.json"))


def _unfinished_label_image(image_group: Path, name: str) -> bool:
    """Whether ``labels/<name>`` was created by a streaming writer and never finalized (not listed)."""
    from ls_data.io.omezarr import group_attributes

    try:
        listed = group_attributes(image_group / "labels")[0].get("labels") or []
        own = group_attributes(image_group / "labels" / name)[0]
    except Exception:
        return False
    return name not in listed and "ls_data_stream" in own and "multiscales" not in own


def _threshold_spec(pc: PredictConfig, volume: InputVolume) -> SegmenterSpec:
    channel = int(pc.threshold_segmenter.get("channel", 0))
    if channel >= len(volume.channels):
        raise ConfigError(
            f"predict.threshold_segmenter.channel={channel}, but the predicted image has "
            f"{len(volume.channels)} channel(s) (predict.channels={pc.channels})"
        )
    return SegmenterSpec("threshold", {}, None, dict(pc.threshold_segmenter))


def _checkpoint_and_device(pc: PredictConfig, checkpoint: str | None) -> tuple[str, str]:
    """The resolved checkpoint path and the device of a detector, checked."""
    import torch

    if checkpoint in (None, "", "???"):
        raise ConfigError("give the trained weights: checkpoint=PATH (a checkpoint folder or its state.pt)")
    if not Path(str(checkpoint)).exists():
        raise ConfigError(f"checkpoint={checkpoint}: no such file or folder")
    device = pc.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("predict.device=cuda but torch sees no CUDA device")
    return str(Path(str(checkpoint)).resolve()), device


def _detector_kwargs(cfg: Mapping[str, Any], pc: PredictConfig, volume: InputVolume) -> dict[str, Any]:
    """DetectorSegmenter's arguments: thresholds, spacing and the intensity normalisation."""
    kwargs: dict[str, Any] = {
        "mask_threshold": pc.mask_threshold,
        "score_threshold": pc.score_threshold,
        "min_visible_fraction": pc.min_visible_fraction,
        "amp": pc.amp,
    }
    entries = list((cfg.get("transforms") or {}).get("eval_transforms_list") or [])
    if pc.normalization == "tile":
        kwargs["per_tile_transforms"] = bool(entries)
    else:
        from ls_train.predict.normalization import volume_normalization

        other = [e.get("name", e.get("_target_")) for e in entries if e.get("name") != "normalize_intensity"]
        if other:
            raise ConfigError(
                f"transforms.eval_transforms_list has {other}: with predict.normalization=volume only "
                f"normalize_intensity is applied (with whole-volume statistics); use "
                f"predict.normalization=tile to run the evaluation transforms on each tile"
            )
        norm = [e for e in entries if e.get("name") == "normalize_intensity"]
        if len(norm) > 1:
            raise ConfigError("transforms.eval_transforms_list has more than one normalize_intensity")
        if norm:
            kwargs["normalization"] = volume_normalization(
                volume.reader, volume.channels, norm[0], pc.normalization_sample_voxels
            )
    kwargs["spacing"] = volume.spacing
    return kwargs


def _segmenter_spec(
    cfg: Mapping[str, Any], pc: PredictConfig, volume: InputVolume, checkpoint: str | None
) -> tuple[SegmenterSpec, Any]:
    """Check the segmenter settings and describe the segmenter; for a detector, load the
    checkpoint once (CheckpointError when it does not fit the config) and check that the input's
    selected channels are as many as the model takes.

    Returns:
        The spec and the loaded detector (None for the threshold segmenter).
    """
    if pc.segmenter == "threshold":
        return _threshold_spec(pc, volume), None
    from ls_train.evaluation.run import model_from_checkpoint

    resolved, device = _checkpoint_and_device(pc, checkpoint)
    model = model_from_checkpoint(cfg, resolved)
    check_model_channels(model_in_channels(model), volume, pc.channels, resolved)
    kwargs = _detector_kwargs(cfg, pc, volume)
    return SegmenterSpec("detector", dict(cfg), resolved, kwargs, device=device), model


def _plan(
    cfg: Mapping[str, Any], pc: PredictConfig, volume: InputVolume, grid: TileGrid, spec: SegmenterSpec
) -> dict[str, Any]:
    """What the stored tiles depend on; a work folder is reused only for an equal plan."""
    checkpoint = None
    if spec.checkpoint is not None:
        p = Path(spec.checkpoint)
        f = p / "state.pt" if p.is_dir() else p
        st = f.stat()
        checkpoint = {"path": str(f), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    norm = spec.kwargs.get("normalization")
    return {
        "version": 1,
        "input": str(volume.path),
        "level": volume.level,
        "channels": volume.channels,
        "shape": list(volume.shape),
        "tile_shape": list(grid.tile_shape),
        "overlap": list(grid.overlap),
        "segmenter": pc.segmenter,
        "threshold_segmenter": dict(pc.threshold_segmenter) if pc.segmenter == "threshold" else None,
        "models": cfg.get("models") if spec.name == "detector" else None,
        "eval_transforms": (cfg.get("transforms") or {}).get("eval_transforms_list")
        if spec.name == "detector"
        else None,
        "normalization": None if norm is None else norm.__dict__,
        "normalization_mode": pc.normalization,
        "mask_threshold": pc.mask_threshold,
        "score_threshold": pc.score_threshold,
        "min_visible_fraction": pc.min_visible_fraction,
        "checkpoint": checkpoint,
    }


def _check_output(
    volume: InputVolume, out: Path, output: str | Path, pc: PredictConfig, overwrite: bool
) -> tuple[bool, bool]:
    """Check where the labels go. Returns whether they go into the input, and whether an
    unfinished label image of an interrupted run is there to be replaced."""
    into_input = out == volume.path
    if into_input and volume.format == "tiff":
        raise ConfigError(
            f"output={output}: labels cannot be written into a TIFF input; give a new *.ome.zarr"
        )
    if not into_input and out.suffix != ".zarr":
        raise ConfigError(
            f"output={output}: must be an OME-Zarr path ending in .zarr (e.g. result.ome.zarr), "
            f"or the input OME-Zarr itself to add the labels to it"
        )
    label_dir = out / "labels" / pc.label_name
    if into_input and volume.level != 0:
        raise ConfigError(
            f"output={output}: labels written into the input must have the grid of its level 0, but "
            f"predict.level={volume.level}; write them to a new *.ome.zarr instead"
        )
    resume_labels = False
    if into_input and label_dir.exists():
        # an unfinished label image of an interrupted run (never listed in labels/) is replaced
        resume_labels = _unfinished_label_image(out, pc.label_name)
        if not (overwrite or resume_labels):
            raise ConfigError(
                f"output={output}: label image {label_dir} exists; pass overwrite=true to replace it"
            )
    elif not into_input and out.exists():
        if not overwrite:
            raise ConfigError(f"output={output} exists; pass overwrite=true to replace it")
        if not _is_zarr_group(out):
            raise ConfigError(f"output={output} exists and is not a Zarr group; refusing to replace it")
    return into_input, resume_labels


def _table_path(pc: PredictConfig, out: Path) -> Path:
    if pc.table:
        return Path(pc.table).expanduser().resolve()
    return out.parent / f"{out.name.removesuffix('.zarr').removesuffix('.ome')}_{pc.label_name}.csv"


def _check_locations(
    pc: PredictConfig, out: Path, output: str | Path, into_input: bool, work: Path, table: Path
) -> None:
    """Refuse, before any work, an output, work folder or table in a folder that is not writable."""
    check_writable(out / "labels" if into_input else out.parent, "output", output)
    if pc.work_dir:
        check_writable(work, "predict.work_dir", pc.work_dir)
    else:
        check_writable(work, "output", f"{output} (its work folder {work})")
    if pc.table:
        check_writable(table.parent, "predict.table", pc.table)
    else:
        check_writable(table.parent, "output", f"{output} (its table {table})")


def _open_store(work: Path, plan: dict[str, Any], grid: TileGrid, overwrite: bool) -> tuple[TileStore, bool]:
    """The work folder for ``plan``, and whether this run created it.

    A work folder of another plan is replaced with ``overwrite``, and also without it when it is
    replaceable (:meth:`TileStore.replaceable`: no finished tile, or left by a run that stopped on
    bad input); otherwise :class:`PlanMismatchError`.
    """
    old = TileStore.read_plan(work)
    if old is not None and old != json.loads(json.dumps(plan)) and (overwrite or TileStore.replaceable(work)):
        TileStore.remove(work)
    created = not work.exists()
    return TileStore.open_or_create(work, plan, len(grid), grid.tile_shape), created


def _capped_warning(capped: list[int], num_tiles: int) -> str:
    shown = ", ".join(str(t) for t in capped[:10]) + (", ..." if len(capped) > 10 else "")
    return (
        f"ls-predict: warning: {len(capped)} of {num_tiles} tiles had more detections than the "
        f"detector keeps (models.box_detections_per_img, per models.test_caps_shape when set): "
        f"objects there may be missing; raise it (and models.rpn_post_nms_top_n_test), set "
        f"models.test_caps_shape, or use smaller tiles (tiles {shown})"
    )


@contextmanager
def _clear_error_when_disk_full(work: Path, num_tiles: int) -> Iterator[None]:
    """A full disk (output, work folder or tile store) becomes a :class:`StorageFullError` saying
    which tiles are kept and how to go on, instead of a traceback from deep in a writer."""
    try:
        yield
    except Exception as exc:
        detail = no_space_left(exc)
        if detail is None or isinstance(exc, StorageFullError):
            raise
        kept = TileStore.tiles_done(work)
        raise StorageFullError(
            f"no space left on device ({detail}); {kept} of {num_tiles} tiles are finished and kept in "
            f"{work}: free space (or give predict.work_dir and output on another disk) and run the same "
            f"command again to go on from them"
        ) from exc


@contextmanager
def _no_block_on_failure(store: TileStore, created: bool) -> Iterator[None]:
    """On an error, leave nothing that refuses the corrected rerun: remove the work folder this
    run created when it holds no finished tile, and mark it replaceable when the input held NaN
    or infinite values (its finished tiles stay for a rerun on the input corrected in place)."""
    try:
        yield
    except BaseException as exc:
        with suppress(OSError):
            if created and not store.done():
                TileStore.remove(store.root)
            elif isinstance(exc, NonFiniteInputError):
                store.mark_bad_input(str(exc))
        raise


def _blocks(
    shape: tuple[int, int, int], chunks: tuple[int, int, int], tile: tuple[int, int, int]
) -> list[Box]:
    """Chunk-aligned output blocks of about a tile's size, in raster order."""
    size = [max(c, (t // c) * c) for c, t in zip(chunks, tile, strict=True)]
    ranges = [[(lo, min(lo + b, s)) for lo in range(0, s, b)] for s, b in zip(shape, size, strict=True)]
    return [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]


def _threads(pc: PredictConfig) -> int:
    import ray

    if pc.threads_per_worker is not None:
        return pc.threads_per_worker
    cpus = int(ray.available_resources().get("CPU", 1))
    return max(1, cpus // pc.num_workers)


def _ray_get(ref: Any) -> Any:
    """``ray.get``, raising a worker's input error (DataError: its message names the file and the
    voxels) as itself rather than wrapped in the worker's traceback."""
    import ray

    from ls_data.errors import DataError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, DataError):
            raise exc.cause from exc
        raise


def _run_tiles(
    pc: PredictConfig, worker: TileWorker, pending: list[int], progress: Progress, use_ray: bool
) -> float:
    """Pass 1 over ``pending``; returns the summed segmenter seconds."""
    forward = 0.0
    if not use_ray:
        for report in worker.run(pending, on_tile=lambda _: progress.update()):
            forward += report.seconds
        return forward
    # a few batches per call, so that an actor reads the next batch while the model runs
    per_call = 4 * pc.batch_size
    chunks = [pending[k : k + per_call] for k in range(0, len(pending), per_call)]
    import ray

    threads = _threads(pc)
    worker.threads = threads
    actor_cls = ray.remote(num_cpus=threads, num_gpus=pc.gpus_per_worker or 0)(TileWorker)
    actors = [
        actor_cls.remote(
            worker.volume,
            worker.grid,
            worker.store,
            worker.spec,
            batch_size=pc.batch_size,
            threads=threads,
            trim_memory=pc.trim_memory,
        )
        for _ in range(pc.num_workers)
    ]
    queue = list(chunks)
    in_flight: dict[Any, Any] = {}
    try:
        for actor in actors:  # two calls in flight per actor: it never waits for the driver
            for _ in range(2):
                if queue:
                    in_flight[actor.run.remote(queue.pop(0))] = actor
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(done[0])
            for report in _ray_get(done[0]):
                forward += report.seconds
                progress.update()
            if queue:
                in_flight[actor.run.remote(queue.pop(0))] = actor
    finally:  # also after a failed tile (a full disk): on a joined cluster the actors would stay
        for actor in actors:
            ray.kill(actor)
    return forward


def _run_paint(
    pc: PredictConfig,
    job: PaintJob,
    blocks: list[Box],
    acc: StatsAccumulator,
    progress: Progress,
    use_ray: bool,
) -> None:
    """Pass 3: paint and write every block, summing the statistics."""
    groups = [blocks[k : k + 8] for k in range(0, len(blocks), 8)]
    if not use_ray:
        for group in groups:
            for stats in paint_blocks(job, group):
                acc.add(stats)
            progress.update(len(group))
        return
    import ray

    task = ray.remote(num_cpus=1)(paint_blocks)
    job_ref = ray.put(job)
    refs = {task.remote(job_ref, group): len(group) for group in groups}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        n = refs.pop(done[0])
        for stats in ray.get(done[0]):
            acc.add(stats)
        progress.update(n)


def run_prediction(
    cfg: Mapping[str, Any],
    *,
    input: str | Path,
    output: str | Path,
    checkpoint: str | None = None,
    overwrite: bool = False,
    print_fn: Callable[[str], None] = print,
    progress_stream: Any = "stderr",
) -> PredictionResult:
    """Segment a whole volume tile by tile, stitch, and write an OME-Zarr label image and a table.

    Args:
        cfg: A resolved experiment config (:func:`ls_train.config.load_config`) with a ``predict``
            section (:class:`~ls_train.predict.config.PredictConfig`).
        input: A TIFF file or an OME-Zarr image group.
        output: The OME-Zarr to write: the input's own path adds ``labels/<label_name>`` to it;
            another path (``*.zarr``) becomes a new OME-Zarr with a copy of the predicted image
            and the labels.
        checkpoint: Detector weights (not needed by the threshold segmenter).
        overwrite: Replace an existing output (or label image of that name).
        print_fn: Where the summary lines go.
        progress_stream: Stream of the progress line ("stderr" or None for none).

    Raises:
        ConfigError: bad settings, a missing checkpoint, an output that exists without overwrite,
            a folder that is not writable, selected channels that the model does not take.
        DataError / VolumeReadError: an unreadable input, a 2-D image, a missing level or channel.
        NonFiniteInputError: NaN or infinite values in the input (a DataError).
        CheckpointError: weights that do not fit the model of the config.
        PlanMismatchError: the work folder holds tiles of a different run.
        StorageFullError: a write failed for lack of space (the finished tiles are kept).
    """
    pc = predict_config(cfg)
    t0 = time.monotonic()
    job = _prepare(cfg, pc, input, output, checkpoint, overwrite, progress_stream)
    grid, work = job.grid, job.work
    with _clear_error_when_disk_full(work, len(grid)):
        store, created = _open_store(work, job.plan, grid, overwrite)
    done = store.done()
    print_fn(
        f"ls-predict: {job.volume.path} level {job.volume.level} {job.volume.shape} (channels "
        f"{job.volume.channels}), {len(grid)} tile{'' if len(grid) == 1 else 's'} of {grid.tile_shape} "
        f"overlapping {grid.overlap}" + (f"; {len(done)} already done in {work}" if done else "")
    )
    seconds: dict[str, float] = {}
    with (
        _clear_error_when_disk_full(work, len(grid)),
        _no_block_on_failure(store, created),
        ray_session(cfg, logs_dir=work) if job.use_ray else nullcontext(),
    ):
        forward = _tiles_pass(job, store, done, seconds)
        stitch, capped = _stitch_pass(job, store, print_fn, seconds)
        rows = _write_pass(job, store, stitch, seconds)
    if not pc.keep_work_dir:
        TileStore.remove(work)
    seconds["total"] = time.monotonic() - t0
    result = PredictionResult(
        output=job.out,
        labels=job.out / "labels" / pc.label_name,
        table=job.table,
        objects=len(rows),
        tiles=len(grid),
        tiles_resumed=len(done),
        forward_seconds=forward,
        tiles_capped=len(capped),
        voxels=job.voxels,
        seconds=seconds,
    )
    print_fn(
        f"ls-predict: {len(rows)} objects in {result.labels}; table {job.table}; "
        f"{seconds['total']:.1f} s ({job.voxels / max(seconds['total'], 1e-9) / 1e6:.2f} Mvoxel/s"
        f"{job.precision})"
        + (f"; {len(capped)} tile(s) reached a cap (see the warning above)" if capped else "")
    )
    return result


@dataclass
class _Job:
    """A prediction run whose input and settings passed every check made before any work.

    Attributes:
        pc: The ``predict`` settings.
        volume: The opened input.
        out: The output OME-Zarr (resolved); ``into_input`` when it is the input itself, and
            ``resume_labels`` when an unfinished label image of an interrupted run is replaced there.
        overwrite: Replace an existing output, label image or work folder of another plan.
        work: The work folder (tiles and, for a new output, the output being assembled).
        table: The per-instance table.
        spec: The segmenter's description (what Ray workers build theirs from).
        segmenter: The segmenter of an in-process run (None with Ray).
        grid: The tiles.
        plan: What the stored tiles depend on (:func:`_plan`).
        stream: Where the progress lines go (None: nowhere).
    """

    pc: PredictConfig
    volume: InputVolume
    out: Path
    into_input: bool
    resume_labels: bool
    overwrite: bool
    work: Path
    table: Path
    spec: SegmenterSpec
    segmenter: Any
    grid: TileGrid
    plan: dict[str, Any]
    stream: Any

    @property
    def use_ray(self) -> bool:
        return self.pc.executor == "ray"

    @property
    def voxels(self) -> int:
        return math.prod(self.volume.shape)

    @property
    def precision(self) -> str:
        """``, bf16 autocast`` / ``, float32`` for a detector (``ls_train.precision``); empty otherwise.

        With Ray workers on the CPU, ``auto`` is decided by each worker's own CPU, which may not be
        the driver's: the line says so instead of naming the driver's choice."""
        if self.spec.name != "detector":
            return ""
        from ls_train.precision import autocast_dtype, precision_name

        if self.use_ray and self.pc.amp == "auto" and str(self.spec.device).startswith("cpu"):
            return ", precision per worker: bf16 autocast where its CPU has bf16 kernels, else float32"
        return f", {precision_name(autocast_dtype(self.pc.amp, self.spec.device, key='predict.amp'))}"


def _prepare(
    cfg: Mapping[str, Any],
    pc: PredictConfig,
    input_path: str | Path,
    output: str | Path,
    checkpoint: str | None,
    overwrite: bool,
    progress_stream: Any,
) -> _Job:
    """Open the input and refuse bad input and settings before the work folder or the output is
    created, so that a refused run leaves nothing behind; build the in-process segmenter.

    A checkpoint that does not fit the config, or channels that do not fit the model, fail here,
    before any work; an in-process run uses the model loaded for that check, Ray workers load
    their own.

    Raises:
        ConfigError, DataError, NonFiniteInputError, CheckpointError: as :func:`run_prediction`.
    """
    import sys

    stream = sys.stderr if progress_stream == "stderr" else progress_stream
    stream = stream if pc.progress else None
    volume = open_input(input_path, pc.level, pc.channels)
    out = Path(output).expanduser().resolve()
    into_input, resume_labels = _check_output(volume, out, output, pc, overwrite)
    work = Path(pc.work_dir).expanduser().resolve() if pc.work_dir else out.parent / f"{out.name}.ls-predict"
    table = _table_path(pc, out)
    _check_locations(pc, out, output, into_input, work, table)
    scan_finite(volume)
    spec, model = _segmenter_spec(cfg, pc, volume, checkpoint)
    segmenter = None if pc.executor == "ray" else spec.build(model)
    del model
    grid = TileGrid(volume.shape, pc.tile_shape, pc.overlap)
    plan = _plan(cfg, pc, volume, grid, spec)
    return _Job(
        pc=pc,
        volume=volume,
        out=out,
        into_input=into_input,
        resume_labels=resume_labels,
        overwrite=overwrite,
        work=work,
        table=table,
        spec=spec,
        segmenter=segmenter,
        grid=grid,
        plan=plan,
        stream=stream,
    )


def _tiles_pass(job: _Job, store: TileStore, done: set[int], seconds: dict[str, float]) -> float:
    """Pass 1: segment and store the tiles not in ``done``; its wall time goes to
    ``seconds["tiles"]``. Returns the summed segmenter seconds."""
    pc, grid = job.pc, job.grid
    pending = [i for i in range(len(grid)) if i not in done]
    worker = TileWorker(
        job.volume,
        grid,
        store,
        job.spec,
        batch_size=pc.batch_size,
        threads=pc.threads_per_worker,
        trim_memory=pc.trim_memory,
        segmenter_instance=job.segmenter,
    )
    progress = Progress(
        "tiles", len(grid), voxels_per_item=job.voxels / len(grid), done=len(done), stream=job.stream
    )
    start = time.monotonic()
    forward = _run_tiles(pc, worker, pending, progress, job.use_ray)
    seconds["tiles"] = time.monotonic() - start
    return forward


def _stitch_pass(
    job: _Job, store: TileStore, print_fn: Callable[[str], None], seconds: dict[str, float]
) -> tuple[StitchPlan, list[int]]:
    """Pass 2: merge the tiles' instances into objects, warning about tiles whose detections were
    capped; its wall time goes to ``seconds["stitch"]``. Returns the plan and the capped tiles."""
    pc, grid = job.pc, job.grid
    start = time.monotonic()
    metas = [store.meta(t) for t in range(len(grid))]
    capped = [t for t, m in enumerate(metas) if m.capped]
    if capped:
        print_fn(_capped_warning(capped, len(grid)))
    stitch = plan_stitch(
        grid,
        metas,
        store.read,
        criterion=pc.merge_criterion,
        threshold=pc.merge_threshold,
        border_margin=pc.border_margin,
    )
    seconds["stitch"] = time.monotonic() - start
    return stitch, capped


def _write_pass(
    job: _Job, store: TileStore, stitch: StitchPlan, seconds: dict[str, float]
) -> list[dict[str, Any]]:
    """Pass 3: paint and write the blocks, build the pyramids, then publish the result
    (:func:`_publish`); its wall time goes to ``seconds["write"]``. Returns the table's rows."""
    pc, volume = job.pc, job.volume
    start = time.monotonic()
    target, image_writer, label_writer = _open_writers(job)
    paint = PaintJob(job.grid, stitch, store, label_writer, image_writer, volume if image_writer else None)
    blocks = _blocks(volume.shape, pc.chunks, job.grid.tile_shape)
    acc = StatsAccumulator(stitch.num_objects)
    _run_paint(
        pc,
        paint,
        blocks,
        acc,
        Progress("write", len(blocks), voxels_per_item=job.voxels / len(blocks), stream=job.stream),
        job.use_ray,
    )
    label_writer.build_pyramid()
    if image_writer is not None:
        image_writer.build_pyramid()
        image_writer.finalize()
    rows = acc.rows(stitch.scores, stitch.classes, stitch.members, volume.spacing, volume.translation)
    _publish(job, label_writer, target, rows)
    seconds["write"] = time.monotonic() - start
    return rows


def _open_writers(job: _Job) -> tuple[Path, Any, Any]:
    """The OME-Zarr the labels are written to (a new output is assembled in the work folder), the
    image writer of a new output (None into the input) and the label image writer."""
    from ls_data.io import ImageWriter, LabelImageWriter, pyramid_factors

    pc, volume = job.pc, job.volume
    factors = pyramid_factors(volume.shape, volume.spacing, max_levels=pc.pyramid_levels or 6)
    target = job.work / "output.ome.zarr" if not job.into_input else job.out
    image_writer = None
    if not job.into_input:
        image_writer = ImageWriter.create(
            target,
            (len(volume.channels), *volume.shape),
            volume.dtype,
            volume.spacing,
            chunks=pc.chunks,
            factors=factors,
            translation=volume.translation,
            overwrite=True,
        )
    label_writer = LabelImageWriter.create(
        target,
        pc.label_name,
        volume.shape,
        volume.spacing,
        chunks=pc.chunks,
        # into the input, the label pyramid follows the image's; a new output uses `factors` for both
        factors=None if job.into_input else factors,
        translation=volume.translation,
        overwrite=job.overwrite or job.resume_labels or not job.into_input,
    )
    return target, image_writer, label_writer


def _publish(job: _Job, label_writer: Any, target: Path, rows: list[dict[str, Any]]) -> None:
    """Write the table, then make the result visible: list the labels (with their class and score
    as properties when not too many), then move a new output into place. Until this last step an
    interrupted run leaves no output that looks complete."""
    properties = None
    if len(rows) <= MAX_LABEL_PROPERTIES:
        properties = [{"label-value": r["id"], "class": r["class"], "score": r["score"]} for r in rows]
    write_table(job.table, rows)
    label_writer.finalize(properties=properties)
    if not job.into_input:
        if job.out.exists():
            shutil.rmtree(job.out)
        shutil.move(str(target), str(job.out))
