"""The ``ls-data`` command line: ``synth`` plus the catalog and crop-index subcommands.

Every subcommand is an argparse subparser whose ``func(args) -> int`` runs it. Input errors
(:class:`~ls_data.errors.DataError`) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from ls_data.errors import DataError

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

#: Modules whose ``register(subparsers)`` adds further subcommands.
SUBCOMMAND_MODULES = ("ls_data.catalog_cli", "ls_data.index_cli")


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic light-sheet dataset (TIFF + OME-Zarr) and its catalog",
        description=(
            "Write a deterministic synthetic light-sheet dataset: ellipsoidal objects of several "
            "classes, anisotropic PSF, depth attenuation, stripes, Poisson and read noise, with exact "
            "instance labels; registered in a catalog (default OUT/catalog.sqlite)."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="dataset folder")
    p.add_argument("--num-volumes", type=int, default=8, help="number of volumes (default 8)")
    p.add_argument("--shape", type=int, nargs=3, default=(32, 128, 128), metavar=("Z", "Y", "X"))
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=(2.0, 0.5, 0.5),
        metavar=("SZ", "SY", "SX"),
        help="micrometres",
    )
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=3)
    p.add_argument("--objects", type=int, default=150, help="objects per volume (default 150)")
    p.add_argument(
        "--radius-range", type=float, nargs=2, default=(3.5, 7.0), metavar=("MIN", "MAX"), help="um"
    )
    p.add_argument("--touching", type=float, default=0.8, help="min centre distance / sum of mean radii")
    p.add_argument("--psf-sigma", type=float, nargs=3, default=(1.5, 0.35, 0.35), metavar=("Z", "Y", "X"))
    p.add_argument("--photons", type=float, default=300.0, help="photons per voxel of a brightness-1 object")
    p.add_argument("--read-noise", type=float, default=2.0)
    p.add_argument("--background", type=float, default=20.0)
    p.add_argument("--stripes", type=int, default=10, help="number of illumination streaks (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--formats", nargs="+", choices=("tiff", "ome-zarr"), default=["tiff", "ome-zarr"])
    p.add_argument("--levels", type=int, default=1, help="OME-Zarr multiscale levels")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--db", default=None, help="catalog URL (default sqlite:///OUT/catalog.sqlite)")
    p.add_argument("--no-catalog", action="store_true", help="do not register the volumes in a catalog")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from ls_data.synth import DEFAULT_CATALOG_URL, synthesize_dataset

    catalog_url = None if args.no_catalog else (args.db or DEFAULT_CATALOG_URL)
    report = synthesize_dataset(
        args.out,
        num_volumes=args.num_volumes,
        shape=tuple(args.shape),
        spacing=tuple(args.spacing),
        channels=args.channels,
        num_objects=args.objects,
        num_classes=args.num_classes,
        radius_range_um=tuple(args.radius_range),
        touching=args.touching,
        psf_sigma_um=tuple(args.psf_sigma),
        photons=args.photons,
        read_noise=args.read_noise,
        background=args.background,
        stripes=args.stripes,
        formats=tuple(args.formats),
        val_fraction=args.val_fraction,
        levels=args.levels,
        catalog_url=catalog_url,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ls-data`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Returns:
        The subcommand's status; 2 after printing a one-line error for a DataError.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DataError as exc:
        print(f"ls-data {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
