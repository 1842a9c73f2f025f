"""lazy_exports: a package whose names import their submodule on first use."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def test_a_lazy_package(tmp_path: Path) -> None:
    pkg = tmp_path / "core_test_lazy_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(
        """
        from ls_core import lazy_exports
        __all__ = ["Heavy", "light"]
        light = 1
        __getattr__, __dir__ = lazy_exports(__name__, {"Heavy": "heavy"}, __all__)
        """
    ))  # fmt: skip
    (pkg / "heavy.py").write_text("class Heavy:\n    pass\n")
    code = textwrap.dedent(
        """
        import sys
        import core_test_lazy_pkg as pkg
        assert "core_test_lazy_pkg.heavy" not in sys.modules
        assert {"Heavy", "light"} <= set(dir(pkg))
        assert pkg.Heavy.__module__ == "core_test_lazy_pkg.heavy"
        assert "Heavy" in vars(pkg)  # kept: the second lookup skips __getattr__
        from core_test_lazy_pkg import Heavy
        try:
            pkg.nothing
        except AttributeError as exc:
            assert str(exc) == "module 'core_test_lazy_pkg' has no attribute 'nothing'", exc
        else:
            raise AssertionError("no AttributeError")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=_env(tmp_path))


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
