"""Hydra search-path plugin of ls-train: while ``ls-train``, ``ls-evaluate`` or ``ls-predict`` runs,
Hydra also looks for configs in ``./configs`` (when present) and in the configs packaged with
ls-train, after the primary config path (``--config-path``) and before ``--config-dir``.

Other Hydra applications in the same environment are left alone: the plugin acts only while
:data:`ls_train.hydra_app.ACTIVE` is true.
"""

from __future__ import annotations

import sys

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LsTrainSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        app = sys.modules.get("ls_train.hydra_app")
        if app is None or not getattr(app, "ACTIVE", False):
            return
        for source in app.search_path_sources():
            search_path.append(provider="ls-train", path=source)
