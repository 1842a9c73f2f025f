"""EntryPointRegistry: listing, lookup, creation and the errors they give, on throwaway distributions."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ls_core import EntryPointRegistry, did_you_mean

GROUP = "ls.core_test_widgets"


class WidgetError(LookupError):
    pass


def make_distribution(root: Path, name: str, version: str, entries: dict[str, str],
                      modules: dict[str, str] | None = None) -> None:
    """An installed distribution under ``root`` as pip lays it out: dist-info and top-level modules."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/entry_points.txt": "\n".join([f"[{GROUP}]", *(f"{k} = {v}" for k, v in entries.items())]),
        **{f"{module}.py": textwrap.dedent(source) for module, source in (modules or {}).items()},
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


WIDGETS = """
class Widget:
    def __init__(self, *, size: int = 1) -> None:
        self.size = size
VALUE = 3
"""


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EntryPointRegistry:
    make_distribution(
        tmp_path / "a", "widgets-a", "1.0",
        {"round_widget": "core_test_widgets_a:Widget", "not_callable": "core_test_widgets_a:VALUE",
         "broken": "core_test_widgets_missing:Widget"},
        {"core_test_widgets_a": WIDGETS},
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    return EntryPointRegistry(group=GROUP, kind="widget", error=WidgetError)


def test_names_are_sorted_and_import_nothing(registry: EntryPointRegistry) -> None:
    assert registry.names() == ["broken", "not_callable", "round_widget"]
    assert "core_test_widgets_a" not in sys.modules


def test_load_and_create(registry: EntryPointRegistry) -> None:
    assert registry.load("round_widget").__name__ == "Widget"
    assert registry.create("round_widget", size=4).size == 4


def test_create_names_the_plugin_when_it_rejects_kwargs(registry: EntryPointRegistry) -> None:
    with pytest.raises(TypeError, match=r"create_widget\('round_widget', \.\.\.\).*colour"):
        registry.create("round_widget", colour="red")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("round_widgt", r"unknown widget 'round_widgt' \(entry-point group 'ls.core_test_widgets'\)\. "
                        r"Did you mean 'round_widget'\? Known widgets: broken, not_callable, round_widget"),
        ("broken", r"widget 'broken' from distribution 'widgets-a 1.0' .*failed to load: "
                   r"ModuleNotFoundError"),
        ("not_callable", r"widget 'not_callable' from distribution 'widgets-a 1.0' points at .*not callable"),
    ],
)  # fmt: skip
def test_load_errors_name_the_plugin(registry: EntryPointRegistry, name: str, pattern: str) -> None:
    with pytest.raises(WidgetError, match=pattern):
        registry.load(name)


def test_empty_group_says_none_installed() -> None:
    empty = EntryPointRegistry(group="ls.core_test_nothing", kind="gadget", error=WidgetError)
    assert empty.names() == []
    with pytest.raises(WidgetError, match=r"Known gadgets: \(none installed\)"):
        empty.load("x")


def test_a_name_declared_by_two_distributions_names_both(
    registry: EntryPointRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(tmp_path / "b", "widgets-b", "2.0", {"round_widget": "other:Widget"})
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(WidgetError, match=r"widget name 'round_widget' is declared twice.*widgets-b 2.0.*"):
        registry.names()


def test_the_same_distribution_twice_on_the_path_is_one(
    registry: EntryPointRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    assert registry.names() == ["broken", "not_callable", "round_widget"]


@pytest.mark.parametrize(
    ("name", "known", "hint"),
    [
        ("resnet3d_5O", ["resnet3d_50", "hiera3d_t"], " Did you mean 'resnet3d_50'?"),
        ("epcohs", ["epochs", "max_bad_steps"], " Did you mean 'epochs'?"),
        ("zzz", ["epochs"], ""),
        (3, ["epochs"], ""),
    ],
)
def test_did_you_mean(name: object, known: list[str], hint: str) -> None:
    assert did_you_mean(name, known) == hint
