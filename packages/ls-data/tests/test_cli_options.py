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
    assert not [flag for flag in old if flag in text]


def test_index_path_is_required_once(capsys):
    with pytest.raises(SystemExit):
        main(["index", "build", "--crop-shape", "4"])
    assert "--index-path is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "build", "--crop-shape", "4", "--index-path", "a", "--out", "b"])
    assert "argument --out: not allowed with argument --index-path" in capsys.readouterr().err
