"""Hydra search-path plugin of ls-train: while ``ls-train``, ``ls-evaluate`` or ``ls-predict`` runs,
Hydra also looks for configs in ``./configs`` (when present) and in the configs packaged with
ls-train, after the primary config path (``--config-path``) and before ``--config-dir``.

While :func:`ls_train.config.load_config` composes a config, the plugin puts that call's sources
(``--config-dir`` folders, ``./configs``, the packaged configs) first, in order.

Other Hydra applications in the same environment are left alone: the plugin acts only while
:data:`ls_train.hydra_app.ACTIVE` is true or ls-train composes a config.
"""

from __future__ import annotations

import sys

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LsTrainSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        config = sys.modules.get("ls_train.config.search_path")
        for source in reversed(config.compose_sources() if config is not None else ()):
            search_path.prepend(provider="ls-train", path=source)  # ls_train.config's composition
        app = sys.modules.get("ls_train.hydra_app")
        if app is None or not getattr(app, "ACTIVE", False):
            return
        for source in app.search_path_sources():
            search_path.append(provider="ls-train", path=source)
