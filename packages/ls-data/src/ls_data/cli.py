"""The ``ls-data`` command line: ``synth`` plus the catalog and crop-index subcommands.

Every subcommand is an argparse subparser whose ``func(args) -> int`` runs it. Input errors
(:class:`~ls_data.errors.DataError`) print one line to stderr and exit with status 2. SIGTERM to
the ``ls-data`` process unwinds the command like an error (a half-built index's temporary file is
removed, an index there before is kept) and exits with status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ls_data.cli_options import add_option
from ls_data.errors import DataError

__all__ = ["SUBCOMMAND_MODULES", "Terminated", "build_parser", "main"]

#: Modules whose ``register(subparsers)`` adds further subcommands.
SUBCOMMAND_MODULES = ("ls_data.catalog_cli", "ls_data.index_cli")


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    from ls_data.synth_styles import STYLES

    p = subparsers.add_parser(
        "synth",
        help="write a synthetic light-sheet dataset (TIFF + OME-Zarr) and its catalog",
        description=(
            "Write a deterministic synthetic light-sheet dataset of one style (ellipsoids: "
            "ellipsoidal objects of several classes, stripes, attenuation; blobs: touching unions "
            "of spheres, PSF with a wide z tail; dense: many small nuclei of widely varying "
            "brightness), with Poisson and read noise and exact instance labels; registered in a "
            "catalog (default OUT/catalog.sqlite). Options left out take the style's values."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="dataset folder")
    p.add_argument(
        "--style", default="ellipsoids", help=f"generator style: {', '.join(STYLES)} (default ellipsoids)"
    )
    p.add_argument("--num-volumes", type=int, default=8, help="number of volumes (default 8)")
    p.add_argument("--shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"))
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=(2.0, 0.5, 0.5),
        metavar=("SZ", "SY", "SX"),
        help="micrometres",
    )
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=None)
    add_option(p, "--num-objects", aliases=["--objects"], type=int, default=None, help="objects per volume")
    add_option(
        p,
        "--radius-range-um",
        aliases=["--radius-range"],
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="object radii, micrometres",
    )
    p.add_argument("--touching", type=float, default=None, help="min centre distance / sum of radii")
    add_option(
        p,
        "--psf-sigma-um",
        aliases=["--psf-sigma"],
        type=float,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="PSF sigma, micrometres",
    )
    p.add_argument("--photons", type=float, default=None, help="photons per voxel of a brightness-1 object")
    p.add_argument("--read-noise", type=float, default=None)
    p.add_argument("--background", type=float, default=None)
    p.add_argument("--stripes", type=int, default=None, help="number of illumination streaks (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--formats", nargs="+", choices=("tiff", "ome-zarr"), default=["tiff", "ome-zarr"])
    p.add_argument("--levels", type=int, default=1, help="OME-Zarr multiscale levels")
    p.add_argument("--val-fraction", type=float, default=0.2)
    add_option(
        p,
        "--catalog",
        aliases=["--db"],
        default=None,
        metavar="URL",
        help="catalog database URL (default sqlite:///OUT/catalog.sqlite)",
    )
    p.add_argument("--no-catalog", action="store_true", help="do not register the volumes in a catalog")
    p.set_defaults(func=_run_synth)


#: ``ls-data synth`` options that default to the style's value (keywords of synthesize_dataset).
_SYNTH_STYLE_OPTIONS = (
    "shape",
    "channels",
    "num_objects",
    "num_classes",
    "radius_range_um",
    "touching",
    "psf_sigma_um",
    "photons",
    "read_noise",
    "background",
    "stripes",
)


def _run_synth(args: argparse.Namespace) -> int:
    from ls_data.synth import SYNTH_CATALOG, synthesize_dataset

    catalog = None if args.no_catalog else (args.catalog or SYNTH_CATALOG)
    given = {
        keyword: tuple(value) if isinstance(value, list) else value
        for keyword in _SYNTH_STYLE_OPTIONS
        if (value := getattr(args, keyword)) is not None
    }
    report = synthesize_dataset(
        args.out,
        num_volumes=args.num_volumes,
        style=args.style,
        spacing=tuple(args.spacing),
        **given,
        formats=tuple(args.formats),
        val_fraction=args.val_fraction,
        levels=args.levels,
        catalog=catalog,
        seed=args.seed,
        progress=lambda line: print(line, flush=True),
    )
    print(report.summary(), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ls-data`` parser with ``synth`` and the subcommands of :data:`SUBCOMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="ls-data", description="Light-sheet volumes: synthetic data, catalog, crop index."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(subparsers)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


class Terminated(BaseException):
    """SIGTERM while an ``ls-data`` process works: raised where the command stands, so that its
    cleanups run (not an Exception: nothing may take it for an input error and go on)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ls-data`` with ``argv`` (default ``sys.argv[1:]``, the process: then SIGTERM raises
    :class:`Terminated` while the command runs); returns the exit status.

    Returns:
        The subcommand's status; 2 after printing a one-line error for a DataError; 143 after
        SIGTERM.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate) if argv is None else None
    try:
        return int(args.func(args))
    except DataError as exc:
        print(f"ls-data {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"ls-data {args.command}: stopped by SIGTERM; re-run the same command", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
