"""The two Hydra internals ``ls_train.hydra_app`` calls, pinned to what it relies on.

``hydra.main`` reads ``sys.argv`` itself, so the commands (which take flags and overrides in any
order, and pick the config from ``checkpoint=DIR``) run Hydra through ``get_args_parser`` and
``_run_hydra``, the two functions ``hydra.main`` is made of. ``hydra-core`` is pinned below 1.4;
these tests say which contract a new Hydra would break, instead of a failing command.
"""

from __future__ import annotations

import argparse
import inspect

from hydra._internal.utils import _run_hydra, get_args_parser


def test_the_args_parser_knows_the_flags_the_commands_read():
    parser = get_args_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    args = parser.parse_intermixed_args(["a=1", "--cfg", "job", "-cn", "name", "b=2"])
    assert args.overrides == ["a=1", "b=2"]
    assert args.config_name == "name"
    assert args.cfg == "job"
    for flag in ("help", "hydra_help", "info", "shell_completion", "multirun", "resolve", "package"):
        assert hasattr(args, flag), flag


def test_run_hydra_takes_the_arguments_the_commands_pass():
    params = inspect.signature(_run_hydra).parameters
    passed = {"args", "args_parser", "task_function", "config_path", "config_name"}
    assert passed <= set(params)
    required = {p.name for p in params.values() if p.default is inspect.Parameter.empty}
    assert required <= passed
