"""The ``ls-data`` flags spell the Python arguments; the old spellings are hidden, deprecated aliases."""

from __future__ import annotations

import pytest

from ls_data.cli import build_parser, main

SYNTH = ["synth", "--out", "ds"]
INDEX = ["index", "build"]
INDEX_REQUIRED = {"--index-path": ["i.sqlite"], "--crop-shape": ["4"]}

#: (command, old flag, new flag, values)
RENAMED = [
    (SYNTH, "--objects", "--num-objects", ["7"]),
    (SYNTH, "--radius-range", "--radius-range-um", ["1", "2"]),
    (SYNTH, "--psf-sigma", "--psf-sigma-um", ["1", "0.5", "0.5"]),
    (SYNTH, "--db", "--catalog", ["sqlite:///c.sqlite"]),
    (INDEX, "--db", "--catalog", ["sqlite:///c.sqlite"]),
    (INDEX, "--out", "--index-path", ["x.sqlite"]),
    (INDEX, "--crop", "--crop-shape", ["4", "8", "8"]),
    (INDEX, "--min-instances", "--min-instances-per-crop", ["3"]),
    (INDEX, "--skip-bad", "--skip-bad-volumes", []),
    *[(["catalog", *command], "--db", "--catalog", ["sqlite:///c.sqlite"]) for command in
      (["register", "folder"], ["list"], ["show", "x"], ["remove", "x"])],
    # selection flags spell the Selection fields (grades=, splits=, ...), roots= and attributes=
    (INDEX, "--grade", "--grades", ["A", "B"]),
    (INDEX, "--split", "--splits", ["train", "val"]),
    (INDEX, "--name", "--names", ["v0"]),
    (INDEX, "--format", "--formats", ["ome-zarr"]),
    (INDEX, "--root", "--roots", ["/data"]),
    (["catalog", "list"], "--grade", "--grades", ["A"]),
    (["catalog", "list"], "--split", "--splits", ["train"]),
    (["catalog", "list"], "--format", "--formats", ["tiff"]),
    (["catalog", "list"], "--name", "--names", ["v0"]),
    (["catalog", "list"], "--channel", "--channels", ["dapi"]),
    (["catalog", "list"], "--attr", "--attributes", ["stage=12"]),
    (["catalog", "register", "folder"], "--attr", "--attributes", ["stage=12"]),
    (["catalog", "register", "folder"], "--root", "--roots", ["/data"]),
    (["catalog", "show", "x"], "--root", "--roots", ["/data"]),
]  # fmt: skip


def _argv(command: list[str], flag: str, values: list[str]) -> list[str]:
    argv = [*command, flag, *values]
    if command is INDEX:
        replaced = {"--out": "--index-path", "--crop": "--crop-shape"}.get(flag, flag)
        argv += [a for name, v in INDEX_REQUIRED.items() if name != replaced for a in (name, *v)]
    return argv


@pytest.mark.parametrize(("command", "old", "new", "values"), RENAMED)
def test_old_flag_sets_the_new_one_and_notes_it(command, old, new, values, capsys):
    parser = build_parser()
    wanted = vars(parser.parse_args(_argv(command, new, values)))
    assert capsys.readouterr().err == ""
    assert vars(parser.parse_args(_argv(command, old, values))) == wanted
    prog = " ".join(["ls-data", *command[: 1 if command[0] == "synth" else 2]])
    assert capsys.readouterr().err == f"{prog}: {old} is deprecated; use {new}\n"
    dest = new.removeprefix("--").replace("-", "_")
    assert wanted[dest] not in (None, [])


@pytest.mark.parametrize(
    "command",
    [["synth"], ["index", "build"], *[["catalog", c] for c in ("register", "list", "show", "remove")]],
)
def test_help_shows_only_the_new_flags(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = capsys.readouterr().out
    assert "--catalog URL" in text and "--db" not in text
    old = {"--objects", "--radius-range ", "--psf-sigma ", "--out ", "--crop ", "--min-instances "}
    old.add("--skip-bad ")
    if command == ["synth"]:
        assert "--num-objects" in text and "--radius-range-um" in text and "--psf-sigma-um" in text
        old -= {"--out "}
    if command == ["index", "build"]:
        assert "--index-path INDEX" in text and "--crop-shape" in text and "--skip-bad-volumes" in text
        assert "--min-instances-per-crop" in text
    if command == ["catalog", "register"]:
        old -= {"--skip-bad "}  # Catalog.register_folder(skip_bad=...)
    selection = {"--grade ", "--split ", "--format ", "--name ", "--channel ", "--attr ", "--root "}
    if command == ["catalog", "register"]:
        selection -= {"--grade ", "--split "}  # register_folder(grade=, split=): one of each
        assert "--grade GRADE" in text and "--split SPLIT" in text and "--grades" not in text
    assert not [flag for flag in old | selection if flag in text]
    if command == ["catalog", "list"]:
        for new in ("--grades", "--splits", "--formats", "--names", "--channels", "--attributes"):
            assert new in text
    if command == ["index", "build"]:
        for new in ("--grades", "--splits", "--formats", "--names", "--roots"):
            assert new in text


def test_repeated_old_and_new_list_flags_collect_all_values(capsys):
    """``catalog list`` appends each use of a list flag, whichever spelling it takes."""
    args = build_parser().parse_args(
        ["catalog", "list", "--grades", "A", "--grade", "B", "--grades", "C", "--attr", "k=1"]
    )
    assert args.grades == ["A", "B", "C"] and args.attributes == ["k=1"]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "ls-data catalog list: --grade is deprecated; use --grades",
        "ls-data catalog list: --attr is deprecated; use --attributes",
    ]


def test_old_format_flag_keeps_its_choices(capsys):
    for flag in ("--formats", "--format"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["catalog", "list", flag, "zarr"])
        assert "invalid choice: 'zarr'" in capsys.readouterr().err


def test_index_path_is_required_once(capsys):
    with pytest.raises(SystemExit):
        main(["index", "build", "--crop-shape", "4"])
    assert "--index-path is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "build", "--crop-shape", "4", "--index-path", "a", "--out", "b"])
    assert "argument --out: not allowed with argument --index-path" in capsys.readouterr().err
