"""A third-party distribution adds a backbone through ``ls.backbones`` and is used by name.

The plugin under ``tests/plugins/ls-toy-backbone`` is pip-installed (a real wheel build and
install, no index) into a scratch folder, then used from a fresh interpreter that has that
folder on its path, as a lab's own plugin would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent / "plugins" / "ls-toy-backbone"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(PLUGIN)],
        check=True,
    )
    return target


def run_with_plugin(site: Path, code: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, env=env)


@pytest.mark.slow(seconds=9)
def test_plugin_is_listed_without_being_imported(plugin_site: Path) -> None:
    run_with_plugin(plugin_site, """
        import sys
        import ls_backbones
        names = ls_backbones.list_backbones()
        assert "toy3d" in names and "resnet3d_50" in names, names
        assert "ls_toy_backbone" not in sys.modules
    """)


@pytest.mark.slow(seconds=11)
def test_plugin_is_created_by_name_and_honours_the_contract(plugin_site: Path) -> None:
    run_with_plugin(plugin_site, """
        import torch
        import ls_backbones
        net = ls_backbones.create_backbone("toy3d", in_channels=2, width=4)
        assert type(net).__module__ == "ls_toy_backbone", type(net)
        out = net(torch.randn(1, 2, 8, 16, 12))
        assert [tuple(v.shape) for v in out.values()] == [(1, 4, 4, 8, 6), (1, 8, 2, 4, 3)]
        pyramid = ls_backbones.create_backbone(
            "fpn3d", body="toy3d", body_kwargs={"in_channels": 2, "width": 4}, out_channels=6)
        assert pyramid.feature_strides == {"c1": (2, 2, 2), "c2": (4, 4, 4), "pool": (8, 8, 8)}
        out = pyramid(torch.randn(1, 2, 8, 16, 16))
        assert [tuple(v.shape) for v in out.values()] == [(1, 6, 4, 8, 8), (1, 6, 2, 4, 4), (1, 6, 1, 2, 2)]
    """)
