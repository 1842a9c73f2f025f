"""``ls-data index``: build a crop index from a catalog selection, and describe an index.

::

    ls-data index build --catalog URL --index-path INDEX.sqlite --crop-shape Z Y X [--stride Z Y X]
                        [--channels C ...] [--min-instance-volume N] [--min-visible-fraction F]
                        [--min-visible-voxels N] [--min-instances-per-crop N] [--grades G ...]
                        [--splits S ...] [--names N ...] [--formats F ...] [--roots DIR ...]
                        [--skip-bad-volumes] [--allow-missing-chunks] [--rebuild] [--slab-size N]
                        [--json]
    ls-data index info INDEX.sqlite [--crops N] [--json]

The options spell the arguments of ``build_crop_index``, ``CropIndexConfig`` and ``Selection``
(``--grades`` sets ``Selection.grades``); the old spellings ``--db``, ``--out``, ``--crop``,
``--min-instances``, ``--skip-bad``, ``--grade``, ``--split``, ``--name``, ``--format`` and
``--root`` still work (deprecated, a note on stderr). ``--crop-shape`` and ``--stride`` take one
value (all axes) or three (z y x). ``build`` prints one progress line per volume on stderr and
the report (a table per volume, totals, skipped
volumes with their reasons) on stdout. ``build`` never creates the catalog it reads, and a
selection that matches no volume is an error that leaves an existing index as it was. Errors
(``DataError``) are printed as one line by ``ls-data`` (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from ls_data.catalog.records import FORMATS
from ls_data.catalog_cli import DEFAULT_CATALOG
from ls_data.cli_options import add_option
from ls_data.errors import DataError
from ls_data.index import CropIndex, CropIndexConfig, SkippedVolumeWarning, as_triple, build_crop_index

__all__ = ["format_report", "register"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``index`` command (``build``, ``info``) to an ``ls-data`` argument parser.

    Args:
        subparsers: The object ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``index`` parser; each sub-command sets ``func(args) -> int``.
    """
    index = subparsers.add_parser(
        "index",
        help="build and inspect crop indices (local SQLite files of the valid crops of a selection)",
        description="Crop index: every valid crop of the selected volumes with its instances.",
    )
    actions = index.add_subparsers(dest="index_command", metavar="{build,info}")
    actions.required = True

    build = actions.add_parser("build", help="build (or reuse) the crop index of a catalog selection")
    add_option(
        build,
        "--catalog",
        aliases=["--db"],
        default=DEFAULT_CATALOG,
        metavar="URL",
        help=f"catalog database URL (default {DEFAULT_CATALOG})",
    )
    add_option(
        build,
        "--index-path",
        aliases=["--out"],
        required=True,
        type=Path,
        metavar="INDEX",
        help="index file to write (SQLite)",
    )
    add_option(
        build,
        "--crop-shape",
        aliases=["--crop"],
        required=True,
        type=int,
        nargs="+",
        metavar="N",
        help="crop shape: Z Y X, or one N",
    )
    build.add_argument(
        "--stride", type=int, nargs="+", metavar="N", help="stride: Z Y X, or one N (default: the crop shape)"
    )
    build.add_argument(
        "--channels", type=int, nargs="+", metavar="C", help="channel indices to read (default: all)"
    )
    build.add_argument(
        "--min-instance-volume", type=int, default=1, metavar="N", help="voxels of a whole instance"
    )
    build.add_argument(
        "--min-visible-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of an instance inside a crop",
    )
    build.add_argument("--min-visible-voxels", type=int, default=1, metavar="N", help="voxels inside a crop")
    add_option(
        build,
        "--min-instances-per-crop",
        aliases=["--min-instances"],
        type=int,
        default=1,
        metavar="N",
        help="listed instances to keep a crop",
    )
    for flag, alias, metavar, what in (
        ("--grades", "--grade", "G", "select volumes of these grades"),
        ("--splits", "--split", "S", "select volumes of these splits"),
        ("--names", "--name", "NAME", "select these volumes"),
        ("--formats", "--format", None, "select volumes of these formats"),
    ):
        choices = list(FORMATS) if flag == "--formats" else None
        add_option(build, flag, aliases=[alias], nargs="+", choices=choices, metavar=metavar, help=what)
    add_option(
        build,
        "--roots",
        aliases=["--root"],
        action="append",
        default=[],
        metavar="DIR",
        help="folder catalog paths may resolve into (repeatable)",
    )
    add_option(
        build,
        "--skip-bad-volumes",
        aliases=["--skip-bad"],
        action="store_true",
        help="skip bad volumes (reported) instead of failing",
    )
    build.add_argument(
        "--allow-missing-chunks",
        action="store_true",
        help="OME-Zarr: read absent chunk files as the fill value (zarr-python skips empty chunks)",
    )
    build.add_argument("--rebuild", action="store_true", help="rebuild even when the index is up to date")
    build.add_argument(
        "--slab-size", type=int, default=16, metavar="N", help="z-planes per read (memory bound)"
    )
    build.add_argument("--json", action="store_true", help="print the report as JSON")
    build.set_defaults(func=_build)

    info = actions.add_parser("info", help="describe a crop index")
    info.add_argument("index", type=Path, help="the index file")
    info.add_argument("--crops", type=int, default=0, metavar="N", help="also list the first N crops")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_info)
    return index


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(v) for v in row] for row in rows]]
    widths = [max(len(row[k]) for row in cells) for k in range(len(header))]
    lines = [
        "  ".join(
            v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_report(index: CropIndex) -> str:
    """Human-readable summary of an index: parameters, a table per volume, totals, skipped volumes."""
    report, params = index.report, index.params
    criteria = ", ".join(
        f"{k}={params[k]}"
        for k in (
            "min_instance_volume",
            "min_visible_fraction",
            "min_visible_voxels",
            "min_instances_per_crop",
        )
    )
    lines = [
        f"index {index.path}  (created {index.created}, fingerprint {index.fingerprint[:12]})",
        f"crop {tuple(params['crop_shape'])}  stride {tuple(params['stride'])}  channels "
        f"{'all' if params['channels'] is None else params['channels']}  {criteria}",
        "",
        _table(
            ["volume", "instances", "grid crops", "crops", "crop instances"],
            [
                [v["name"], v["instances"], v["grid_crops"], v["crops"], v["crop_instances"]]
                for v in report["per_volume"]
            ]
            + [
                [
                    "total",
                    report["instances"],
                    sum(v["grid_crops"] for v in report["per_volume"]),
                    report["crops"],
                    report["crop_instances"],
                ]
            ],
        ),
        "",
        f"{report['volumes']} volume(s) indexed, {report['skipped_count']} skipped, "
        f"{report['crops']} crops, built in {report['build_seconds']} s",
    ]
    lines += [f"skipped {s['name']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)


def _build(args: argparse.Namespace) -> int:
    from ls_data.catalog import Selection

    crop = as_triple(args.crop_shape if len(args.crop_shape) != 1 else args.crop_shape[0], "--crop-shape")
    stride = (
        None
        if args.stride is None
        else as_triple(args.stride if len(args.stride) != 1 else args.stride[0], "--stride")
    )
    selection = Selection(grades=args.grades, splits=args.splits, names=args.names, formats=args.formats)
    config = CropIndexConfig(
        crop_shape=crop,
        stride=stride,
        channels=None if args.channels is None else tuple(args.channels),
        min_instance_volume=args.min_instance_volume,
        min_visible_fraction=args.min_visible_fraction,
        min_visible_voxels=args.min_visible_voxels,
        min_instances_per_crop=args.min_instances_per_crop,
        skip_bad_volumes=args.skip_bad_volumes,
        allow_missing_chunks=args.allow_missing_chunks,
        slab_size=args.slab_size,
    )
    before = _file_id(args.index_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedVolumeWarning)
        index = build_crop_index(
            catalog=args.catalog,
            selection=selection,
            index_path=args.index_path,
            config=config,
            roots=args.roots,
            rebuild=args.rebuild,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    reused = before is not None and before == _file_id(args.index_path)
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(index.path),
                    "reused": reused,
                    "fingerprint": index.fingerprint,
                    "params": index.params,
                    "report": index.report,
                },
                indent=2,
            )
        )
    else:
        if reused:
            print(f"index {index.path} is up to date (same sources and parameters); reused it")
        print(format_report(index))
    return 0


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _info(args: argparse.Namespace) -> int:
    index = CropIndex.open(args.index)
    if args.crops < 0:
        raise DataError(f"--crops must be >= 0, got {args.crops}")
    crops = [index.crop(i) for i in range(min(args.crops, len(index)))]
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(index.path),
                    "crops": len(index),
                    "created": index.created,
                    "fingerprint": index.fingerprint,
                    "params": index.params,
                    "report": index.report,
                    "volumes": [
                        {
                            "id": v.id,
                            "catalog_id": v.catalog_id,
                            "name": v.name,
                            "image_path": str(v.image_path),
                            "label_path": str(v.label_path),
                            "format": v.format,
                            "shape": list(v.shape),
                            "spacing": list(v.spacing),
                            "channels": list(v.channels),
                        }
                        for v in index.volumes()
                    ],
                    "first_crops": [
                        {
                            "volume": c.volume.name,
                            "origin": list(c.origin),
                            "instances": [
                                {
                                    "label_id": i.label_id,
                                    "class_id": i.class_id,
                                    "box": list(i.box),
                                    "visible_voxels": i.visible_voxels,
                                    "total_voxels": i.total_voxels,
                                }
                                for i in c.instances
                            ],
                        }
                        for c in crops
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(format_report(index))
    if crops:
        print()
        print(
            _table(
                ["crop", "volume", "origin (z, y, x)", "instances", "classes"],
                [
                    [
                        c.index,
                        c.volume.name,
                        c.origin,
                        len(c.instances),
                        sorted({i.class_id for i in c.instances}),
                    ]
                    for c in crops
                ],
            )
        )
    return 0
