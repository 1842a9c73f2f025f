"""``ls-data catalog``: register, list, show and remove catalog volumes from the shell.

::

    ls-data catalog register FOLDER [--catalog URL] [--roots DIR ...] [--grade G] [--split S]
                                    [--attributes KEY=VALUE ...] [--skip-bad] [--recursive]
                                    [--label-name NAME]
    ls-data catalog list   [--catalog URL] [--grades G ...] [--splits S ...] [--formats F ...]
                           [--names N ...] [--min-channels N] [--channels NAME ...]
                           [--attributes KEY=VALUE ...] [--json]
    ls-data catalog show   NAME [--catalog URL] [--roots DIR ...] [--json]
    ls-data catalog remove NAME [--catalog URL]

The options spell the arguments they set: ``Catalog(roots=)``, ``Catalog.register_folder(grade=,
split=, attributes=)`` (one grade and split for the registered volumes) and the fields of
``Selection`` (``grades``, ``splits``, ...) for ``list``. The options that take a list are
repeatable (``--grades A --grades B``). The old spellings ``--db``, ``--root``, ``--attr`` and
(``list``) ``--grade``, ``--split``, ``--format``, ``--name``, ``--channel`` still work
(deprecated, a note on stderr). ``--catalog`` defaults to ``sqlite:///catalog.sqlite`` (in
the current folder). Only ``register`` creates a catalog that does not exist (and removes it
again when the registration fails); ``list``, ``show`` and ``remove`` report a missing catalog as
an error. ``NAME`` is a volume name, or its id when no volume has that name. ``--attributes``
values are read as JSON when they parse (``stage=12`` is a number, ``ok=true`` a boolean), else
as text. Errors (``DataError``) are
printed as one line by ``ls-data`` (exit status 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ls_data.catalog import Catalog, CatalogError, Selection, VolumeNotFoundError, VolumeRecord
from ls_data.catalog.records import FORMATS
from ls_data.catalog.url import parse_url
from ls_data.cli_options import add_option
from ls_data.errors import DataError

__all__ = ["DEFAULT_CATALOG", "format_table", "register"]

#: Default catalog of ``ls-data catalog`` and ``ls-data index build``, in the current folder
#: (``ls-data synth`` writes its own inside the dataset folder: ``ls_data.synth.SYNTH_CATALOG``).
DEFAULT_CATALOG = "sqlite:///catalog.sqlite"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``catalog`` command (with its sub-commands) to an ``ls-data`` argument parser.

    Args:
        subparsers: The object ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``catalog`` parser; each sub-command sets ``func(args) -> int``.
    """
    catalog = subparsers.add_parser(
        "catalog",
        help="register, list, show and remove volumes of a catalog database",
        description="The volume catalog: which volumes exist, where their files are, and their metadata.",
    )
    actions = catalog.add_subparsers(dest="catalog_command", metavar="{register,list,show,remove}")
    actions.required = True

    def common(parser: argparse.ArgumentParser, *, roots: bool = True) -> None:
        add_option(
            parser,
            "--catalog",
            aliases=["--db"],
            default=DEFAULT_CATALOG,
            metavar="URL",
            help=f"catalog database URL (default {DEFAULT_CATALOG}, or postgresql://user:pw@host:port/db)",
        )
        if roots:
            add_option(
                parser,
                "--roots",
                aliases=["--root"],
                action="append",
                default=[],
                metavar="DIR",
                help="folder catalog paths may resolve into (repeatable; default: any)",
            )

    reg = actions.add_parser("register", help="add the TIFF pairs and OME-Zarr groups of a folder")
    reg.add_argument(
        "folder", help="folder of <name>_image.tif + <name>_labels.tif pairs and <name>.ome.zarr groups"
    )
    common(reg)
    reg.add_argument("--grade", help="quality grade of the registered volumes")
    reg.add_argument("--split", help="split of the registered volumes (train, val, test, ...)")
    add_option(
        reg,
        "--attributes",
        aliases=["--attr"],
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute of the registered volumes (repeatable)",
    )
    reg.add_argument(
        "--skip-bad", action="store_true", help="skip bad volumes with a warning instead of failing"
    )
    reg.add_argument("--recursive", action="store_true", help="search sub-folders too")
    reg.add_argument(
        "--label-name", help="OME-Zarr label image to use (default: cells, else the first listed)"
    )
    reg.set_defaults(func=_register)

    lst = actions.add_parser("list", help="list volumes as a table, optionally filtered")
    common(lst, roots=False)
    for flag, alias, metavar, what in (
        ("--grades", "--grade", "G", "keep volumes of this grade"),
        ("--splits", "--split", "S", "keep volumes of this split"),
        ("--formats", "--format", None, "keep volumes of this format"),
        ("--names", "--name", "NAME", "keep this volume"),
    ):
        choices = list(FORMATS) if flag == "--formats" else None
        add_option(
            lst,
            flag,
            aliases=[alias],
            action="append",
            choices=choices,
            metavar=metavar,
            help=f"{what} (repeatable)",
        )
    lst.add_argument("--min-channels", type=int, help="keep volumes with at least this many channels")
    add_option(
        lst,
        "--channels",
        aliases=["--channel"],
        action="append",
        metavar="NAME",
        help="keep volumes that have this channel (repeatable)",
    )
    add_option(
        lst,
        "--attributes",
        aliases=["--attr"],
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep volumes with this attribute value (repeatable)",
    )
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(func=_list)

    show = actions.add_parser("show", help="print one volume's row and resolved paths")
    show.add_argument("name", help="volume name (or id)")
    common(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    rm = actions.add_parser("remove", help="remove a volume's row (its files are left alone)")
    rm.add_argument("name", help="volume name (or id)")
    common(rm, roots=False)
    rm.set_defaults(func=_remove)
    return catalog


def _parse_attrs(items: Sequence[str]) -> dict[str, Any] | None:
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise DataError(f"--attributes {item!r} must be KEY=VALUE")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _get(catalog: Catalog, name: str) -> VolumeRecord:
    try:
        return catalog.get(name)
    except VolumeNotFoundError:
        if name.isdigit():
            return catalog.get(int(name))
        raise


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text table with a header rule; one line per row."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _fmt_number(value: float) -> str:
    return f"{value:g}"


def _row(record: VolumeRecord) -> list[str]:
    return [
        str(record.id),
        record.name,
        record.format,
        "x".join(str(s) for s in record.shape),
        ",".join(record.channels),
        ",".join(_fmt_number(s) for s in record.spacing),
        record.grade or "-",
        record.split or "-",
    ]


def _register(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():  # before the catalog is opened: a typo creates no catalog
        raise CatalogError(f"catalog register: folder {str(folder)!r} does not exist or is not a folder")
    new_file = _missing_sqlite_file(args.catalog)
    with Catalog(args.catalog, roots=args.roots, create=True) as catalog:
        try:
            report = catalog.register_folder(
                folder,
                grade=args.grade,
                split=args.split,
                attributes=_parse_attrs(args.attributes),
                skip_bad=args.skip_bad,
                recursive=args.recursive,
                label_name=args.label_name,
            )
        except BaseException:
            _remove_if_empty(catalog, new_file)
            raise
        for name in report.added:
            print(f"added    {report.ids[name]:>5}  {name}")
        for name in report.updated:
            print(f"updated  {report.ids[name]:>5}  {name}")
        for skipped in report.skipped:
            print(f"skipped         {skipped.name}: {skipped.reason}")
        print(f"{report.summary()} -> {catalog.safe_url}")
    return 0


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file of ``url`` when it does not exist yet (opening it will create it), else None."""
    path = parse_url(url).sqlite_path
    return path if path is not None and not path.exists() else None


def _remove_if_empty(catalog: Catalog, new_file: Path | None) -> None:
    """Undo the catalog this command created (the SQLite file, or the tables in a PostgreSQL
    database), unless someone has added volumes meanwhile."""
    try:
        if not catalog.remove_if_created_and_empty():
            return
    except DataError:
        return  # the database is unusable; the error being raised says why
    if new_file is not None:
        new_file.unlink(missing_ok=True)


def _list(args: argparse.Namespace) -> int:
    selection = Selection(
        names=args.names,
        grades=args.grades,
        splits=args.splits,
        formats=args.formats,
        min_channels=args.min_channels,
        channels=args.channels,
        attributes=_parse_attrs(args.attributes),
    )
    with Catalog(args.catalog) as catalog:
        records = catalog.volumes(selection)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    header = ["id", "name", "format", "shape (CxZxYxX)", "channels", "spacing (z,y,x um)", "grade", "split"]
    print(format_table(header, [_row(r) for r in records]))
    print(f"{len(records)} volume(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    with Catalog(args.catalog, roots=args.roots) as catalog:
        record = _get(catalog, args.name)
        paths: dict[str, str] = {}
        try:
            image, labels = catalog.resolve(record, must_exist=False)
            for key, path in (("image_path", image), ("label_path", labels)):
                paths[key] = str(path) + ("" if path.exists() else "  (missing)")
        except DataError as exc:
            paths = {"image_path": f"(cannot resolve: {exc})", "label_path": "(see image_path)"}
    if args.json:
        print(json.dumps({**record.to_dict(), **paths}, indent=2))
        return 0
    fields = record.to_dict()
    fields["shape"] = "x".join(str(s) for s in record.shape) + "  (C x Z x Y x X)"
    fields["channels"] = ", ".join(record.channels)
    fields["spacing"] = ", ".join(_fmt_number(s) for s in record.spacing) + " um (z, y, x)"
    fields["attributes"] = json.dumps(record.attributes, sort_keys=True)
    fields.update(paths)
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        print(f"{key.ljust(width)}  {'-' if value is None else value}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    with Catalog(args.catalog) as catalog:
        record = catalog.remove(_get(catalog, args.name).id)
    print(f"removed volume {record.id} {record.name!r} from the catalog (its files are left in place)")
    return 0
