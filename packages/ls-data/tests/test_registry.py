"""The ls.datasets / ls.transforms entry-point registries and the ``_target_`` loader."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ls_data.errors import DataError
from ls_data.registry import (
    RegistryError,
    create_dataset,
    create_transform,
    get_dataset,
    get_transform,
    instantiate,
    list_datasets,
    list_transforms,
    load_object,
)
from ls_data.transforms import RandomFlip, build_transforms

BUILTIN_TRANSFORMS = {
    "random_crop", "random_flip", "random_rot90_yx", "normalize_intensity", "random_gamma",
    "gaussian_noise", "rescale_to_spacing", "random_zoom", "random_blur", "random_stripes",
    "random_intensity_scale",
}  # fmt: skip


def make_distribution(
    root: Path, name: str, entries: dict[str, dict[str, str]], modules: dict[str, str] | None = None
) -> None:
    """Lay out an installed distribution (dist-info + modules) under ``root``, as pip would."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) for group, items in entries.items()
    )
    (info / "entry_points.txt").write_text(text)
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def test_builtins_are_listed_sorted() -> None:
    names = list_transforms()
    assert names == sorted(names) and set(names) >= BUILTIN_TRANSFORMS
    assert "skittlez" in list_datasets()


def test_listing_imports_no_transform_or_dataset_module() -> None:
    code = textwrap.dedent(
        """
        import sys
        from ls_data.registry import list_datasets, list_transforms
        assert "random_flip" in list_transforms() and "skittlez" in list_datasets()
        heavy = ("ls_data.transforms", "ls_data.dataset", "ls_data.index", "ls_data.io", "ls_data.catalog")
        loaded = sorted(m for m in sys.modules if m.startswith(heavy))
        assert loaded == [], loaded
        from ls_data.registry import get_transform
        get_transform("random_flip")
        assert "ls_data.transforms.spatial" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_get_and_create_transform() -> None:
    assert get_transform("random_flip") is RandomFlip
    flip = create_transform("random_flip", axes=("z",), p=1.0)
    assert isinstance(flip, RandomFlip) and flip.axes == ("z",)
    with pytest.raises(TypeError, match=r"create_transform\('random_flip'"):
        create_transform("random_flip", axis="z")


def test_unknown_names_list_known_ones_and_suggest() -> None:
    with pytest.raises(RegistryError) as info:
        get_transform("random_rot90")
    message = str(info.value)
    assert "Did you mean 'random_rot90_yx'" in message
    assert all(name in message for name in BUILTIN_TRANSFORMS)
    assert isinstance(info.value, LookupError) and isinstance(info.value, DataError)
    with pytest.raises(RegistryError, match=r"unknown dataset 'skitlez'.*Did you mean 'skittlez'"):
        create_dataset("skitlez")


def test_duplicate_name_names_both_distributions(tmp_path: Path, monkeypatch) -> None:
    make_distribution(tmp_path, "fake-flips", {"ls.transforms": {"random_flip": "fake_flips:Flip"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError) as info:
        list_transforms()
    message = str(info.value)
    assert "'random_flip' is declared twice" in message
    assert "ls-data" in message and "fake-flips" in message


def test_failing_plugin_names_its_distribution(tmp_path: Path, monkeypatch) -> None:
    make_distribution(
        tmp_path,
        "broken-plugin",
        {"ls.transforms": {"broken": "broken_tf:Broken"}, "ls.datasets": {"broken_ds": "broken_ds:Data"}},
        {
            "broken_tf": "import no_such_module_for_ls_data_tests\n",
            "broken_ds": "raise RuntimeError('boom')\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    dist = r"from distribution 'broken-plugin 1\.0'"
    with pytest.raises(RegistryError, match=rf"transform 'broken' {dist}.*failed to load.*no_such_module"):
        get_transform("broken")
    with pytest.raises(RegistryError, match=rf"dataset 'broken_ds' {dist}.*RuntimeError: boom"):
        get_dataset("broken_ds")


def test_third_party_plugin_is_used_like_a_builtin(tmp_path: Path, monkeypatch) -> None:
    source = """
        class Identity:
            def __init__(self, *, tag: str = "x") -> None:
                self.tag = tag

            def __call__(self, image, target, meta):
                return image, target, dict(meta, tag=self.tag)


        class Data:
            def __init__(self, *, n: int, transforms=None) -> None:
                self.n, self.transforms = n, transforms

            def __len__(self):
                return self.n

            def __getitem__(self, i):
                return i
        """
    make_distribution(
        tmp_path,
        "lab-plugin",
        {
            "ls.transforms": {"identity_tag": "lab_plugin_mod:Identity"},
            "ls.datasets": {"lab": "lab_plugin_mod:Data"},
        },
        {"lab_plugin_mod": source},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "identity_tag" in list_transforms() and "lab" in list_datasets()
    pipeline = build_transforms([{"name": "identity_tag", "tag": "hello"}])
    assert pipeline(1, {}, {})[2] == {"tag": "hello"}
    assert len(create_dataset("lab", n=3)) == 3
    with pytest.raises(DataError, match=r"datasets.database \('lab'\): missing required key 'n'"):
        instantiate({"name": "lab"}, kind="dataset", where="datasets.database")


def test_load_object_paths() -> None:
    assert load_object("ls_data.transforms.spatial.RandomFlip") is RandomFlip
    assert load_object("ls_data.transforms.spatial:RandomFlip") is RandomFlip
    assert load_object("ls_data.transforms.RandomFlip.apply") is RandomFlip.apply
    with pytest.raises(RegistryError, match=r"'ls_data\.transforms\.spatial' has no attribute 'Flip'"):
        load_object("ls_data.transforms.spatial.Flip")
    with pytest.raises(RegistryError, match="no importable module"):
        load_object("not_a_module_anywhere.Thing")
    with pytest.raises(RegistryError, match="dotted path"):
        load_object("")


def test_load_object_reports_errors_inside_the_module(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "inner_fail_mod.py").write_text("import missing_dependency_for_ls_data_tests\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match=r"importing 'inner_fail_mod' failed.*missing_dependency"):
        load_object("inner_fail_mod.X")


def test_instantiate_rejects_keys_the_caller_sets() -> None:
    with pytest.raises(DataError, match="'p' is set by the caller"):
        instantiate({"name": "random_flip", "p": 0.5}, kind="transform", where="t", extra={"p": 1.0})
