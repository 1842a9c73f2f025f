"""Hydra's own command line for ``ls-train``, ``ls-evaluate`` and ``ls-predict``.

The three commands are Hydra applications (``hydra.main``): every flag of Hydra's command line
works as Hydra documents it: ``--help`` (with the config groups of the packaged configs and of
``./configs``), ``--hydra-help``, ``--cfg job|hydra|all`` with ``--resolve`` and ``--package``,
``--info``, ``--config-path/-cp``, ``--config-name/-cn``, ``--config-dir/-cd``,
``--multirun/-m`` (sweeps over values and config groups, through Hydra's basic launcher or any
launcher configured with ``hydra/launcher=...``) and ``--shell-completion``.

What the project adds to a plain Hydra application:

- **Config search path.** Configs are looked up in the primary config path (``--config-path``,
  none by default), ``./configs`` (when present), the configs packaged with ls-train, then
  ``--config-dir`` (the search-path plugin ``hydra_plugins.ls_train_searchpath``).
- **Checks before any work.** The composed config is resolved and validated
  (:func:`ls_train.config.finish_config`) before the command does anything; a bad config exits
  with status 2 (Hydra's own composition errors too, with the valid keys named next to a
  misspelled override).
- **Run folders.** ``ls-train`` runs in ``<trainer.runs_root>/<trainer.run_name>`` (the run name
  defaults to the config name), and Hydra keeps the composed config, the overrides and its own
  config in ``.hydra/`` there. A multirun puts job ``N`` in
  ``<trainer.runs_root>/multirun/<date>/<time>/N`` and ends with one table of the jobs' final
  metrics (:class:`MultirunSummary`). ``ls-evaluate`` and ``ls-predict`` write only where their
  keys say (no Hydra folders in a plain run).
- **Config from a checkpoint.** Without ``--config-name``, ``ls-evaluate`` and ``ls-predict`` take
  the experiment config stored in the ``checkpoint=DIR`` given (registered in Hydra's config
  store as ``checkpoint_config``); the overrides apply on top of it as on any config.
- **Logging.** Hydra configures only its own logger (``hydra/hydra_logging=ls``,
  ``hydra/job_logging=none``): the commands' console is their own (see
  :mod:`ls_train.trainer.console`).

- **SIGTERM** outside a training loop (data preparation, the final evaluation, a prediction) ends
  the command with "stopped on request" and status 0, as a stopped training does: re-running the
  same command goes on (a training loop stops at a checkpoint by itself, see
  :mod:`ls_train.trainer.faults`). One that arrives before the work starts (while Hydra composes
  the config) stops it before it starts; one that arrives after the work is done (Hydra's
  teardown, the interpreter's exit) is noted and the command ends as it would have, with its
  status (see :class:`SigtermPolicy`).

Exit status: the worst of the jobs' statuses (0 done or stopped on request, 1 stopped on an error,
2 bad config, arguments, input or checkpoint); 2 when Hydra itself refuses the command line or the
config.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "ACTIVE",
    "CHECKPOINT_CONFIG",
    "RESULT_FILE",
    "App",
    "MultirunSummary",
    "SigtermPolicy",
    "StopRequested",
    "experiments",
    "run_app",
    "search_path_sources",
    "stop_on_sigterm",
    "write_result",
]

ACTIVE = False
"""True while one of the commands runs: the search-path plugin acts only then."""

CHECKPOINT_CONFIG = "checkpoint_config"
"""Config-store name of the config read from ``checkpoint=DIR`` (no ``--config-name`` given)."""

RESULT_FILE = "result.json"
"""Written by ``ls-train`` into its run folder: exit status, checkpoints and final metrics."""

SUMMARY_METRICS = ("ap@50", "ap@75", "ap@90", "mean_iou@50", "coco_mask_ap")

_INFORMATIONAL = ("help", "hydra_help", "cfg", "info", "shell_completion")

Task = Callable[[dict[str, Any]], int]
"""A command's work on the finished (resolved, validated) config; returns the exit status."""


@dataclass(frozen=True)
class App:
    """One command.

    Attributes:
        prog: The command's name (``hydra.job.name``, messages, ``hydra/help`` option).
        task: What it does with the finished config.
        run_dir: Hydra's ``hydra.run.dir`` (None: the working directory, and no ``.hydra/``).
        sweep_dir: Hydra's ``hydra.sweep.dir`` (None: Hydra's default).
        from_checkpoint: Without ``--config-name``, take the config stored in ``checkpoint=``.
        summary: End a multirun with :class:`MultirunSummary`.
        config_by_key: ``(key, config name)`` pairs: without ``--config-name`` (and without
            ``checkpoint=``), an override of ``key`` selects that packaged config
            (``ls-evaluate pred=... gt=...`` -> ``evaluate_volume``).
    """

    prog: str
    task: Task
    run_dir: str | None = None
    sweep_dir: str | None = None
    from_checkpoint: bool = False
    summary: bool = False
    config_by_key: tuple[tuple[str, str], ...] = ()

    def hydra_overrides(self) -> list[str]:
        """Hydra settings the command puts before the user's overrides (which may change them)."""
        out = ["hydra/job_logging=none", "hydra/hydra_logging=ls", f"hydra/help={self.prog}"]
        out.append(f"hydra.job.name={self.prog}")
        if self.run_dir is None:
            out += ["hydra.run.dir=.", "hydra.output_subdir=null"]
        else:
            out.append(f"hydra.run.dir='{self.run_dir}'")
        if self.sweep_dir is not None:
            out.append(f"hydra.sweep.dir='{self.sweep_dir}'")
        if self.summary:
            out.append(f"+hydra.callbacks.ls_train_summary._target_={__name__}.MultirunSummary")
        return out


def search_path_sources() -> list[str]:
    """What the search-path plugin appends: ``./configs`` (when present), the packaged configs."""
    from ls_train.config import config_search_path

    return config_search_path(())


def experiments(sources: Sequence[str]) -> list[str]:
    """The primary configs (``--config-name`` values) at the top of the ``file://`` and ``pkg://``
    config ``sources``."""
    import importlib.resources

    names: set[str] = set()
    for source in sources:
        if source.startswith("file://"):
            entries = list(Path(source.removeprefix("file://")).glob("*.yaml"))
        elif source.startswith("pkg://"):
            package, _, sub = source.removeprefix("pkg://").partition("/")
            root = importlib.resources.files(package)
            entries = [e for e in (root / sub if sub else root).iterdir() if e.name.endswith(".yaml")]
        else:
            continue
        names.update(e.name.removesuffix(".yaml") for e in entries)
    return sorted(names)


def _register_resolvers() -> None:
    from ls_train.config.compose import register_resolvers as register_config_resolvers

    register_config_resolvers()

    def run_dir(runs_root: Any, run_name: Any, config_name: Any) -> str:
        return str(Path(str(runs_root)).expanduser() / str(config_name if run_name is None else run_name))

    if not OmegaConf.has_resolver("ls.run_dir"):
        OmegaConf.register_new_resolver("ls.run_dir", run_dir)
    if not OmegaConf.has_resolver("ls.experiments"):  # for --help
        OmegaConf.register_new_resolver(
            "ls.experiments", lambda: ", ".join(experiments(search_path_sources()))
        )


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    values = [o.split("=", 1)[1] for o in overrides if o.startswith((f"{key}=", f"+{key}="))]
    return values[-1] if values else None


class _Refused(Exception):
    """A command line refused before Hydra runs (exit status 2)."""


def _store_checkpoint_config(checkpoint: str) -> None:
    from hydra.core.config_store import ConfigStore

    from ls_train.checkpoint_config import saved_config

    cfg = saved_config(checkpoint, complete=True)
    if cfg is None:
        raise _Refused(
            f"checkpoint={checkpoint}: this checkpoint carries no config (written before checkpoints "
            f"carried one); pass --config-name=NAME, the experiment that trained it"
        )
    for key in ("checkpoint", "input", "output", "overwrite", "accept_config_mismatch"):
        cfg.setdefault(key, None)
    ConfigStore.instance().store(name=CHECKPOINT_CONFIG, node=cfg, provider="ls-train checkpoint")


def _prepare(app: App, argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Hydra's parser and its parse of ``argv``, with the command's Hydra settings put before the
    user's overrides and ``--config-name`` set when the config comes from the checkpoint."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = app.prog
    # flags and overrides in any order (Hydra's own parse_args takes overrides in one run only)
    args = parser.parse_intermixed_args(argv)  # exits 2 on an unknown flag
    informational = any(getattr(args, flag) for flag in _INFORMATIONAL)
    if args.config_name is None:
        checkpoint = _override_value(args.overrides, "checkpoint") if app.from_checkpoint else None
        by_key = [name for key, name in app.config_by_key if _override_value(args.overrides, key)]
        if checkpoint not in (None, "", "???", "null"):
            _store_checkpoint_config(checkpoint)
            args.config_name = CHECKPOINT_CONFIG
        elif by_key:
            args.config_name = by_key[0]
        elif not informational:
            what = "--config-name=NAME, or checkpoint=DIR to use the config stored in the checkpoint"
            what = what if app.from_checkpoint else "--config-name=NAME"
            what += "".join(f", or {key}=... (the {name} config)" for key, name in app.config_by_key)
            raise _Refused(f"give {what}")
    args.overrides = [*app.hydra_overrides(), *args.overrides]
    return parser, args


def _finish(app: App, cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ls_train.checkpoint_config import check_against_checkpoint
    from ls_train.config import finish_config

    hc = HydraConfig.get()
    plain = finish_config(cfg, str(hc.job.config_name))
    checkpoint = plain.get("checkpoint")
    if hc.job.config_name != CHECKPOINT_CONFIG and checkpoint not in (None, "", "???"):
        check_against_checkpoint(plain, str(checkpoint))
    if app.summary and hc.mode == RunMode.MULTIRUN and isinstance(plain.get("trainer"), dict):
        out = Path(hc.runtime.output_dir)  # each job of a sweep trains in its own folder
        plain["trainer"].update(runs_root=str(out.parent), run_name=out.name)
    return plain


def _explain(args: argparse.Namespace) -> str:
    """The valid keys next to a misspelled override (Hydra's own message says only that the key
    is not in the config)."""
    from ls_train.config import config_search_path
    from ls_train.config.compose import explain_override

    if args.config_name is None or args.multirun:
        return ""
    dirs = [d for d in (args.config_path, args.config_dir) if d and "://" not in d]
    try:
        sources = config_search_path(dirs)
    except ValueError:
        return ""
    overrides = [o for o in args.overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    return explain_override(args.config_name, overrides, sources).strip()


def _stop_requested_in(exc: BaseException) -> bool:
    """Whether ``exc`` was raised because of :class:`StopRequested`: code that calls back into
    Python from C (Ray's ``ray.wait`` checks signals there) can turn it into another error, e.g.
    ``SystemError: ... returned a result with an exception set``, caused by it."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, StopRequested):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


class StopRequested(BaseException):
    """SIGTERM while a command works outside a training loop (which stops at a checkpoint on its
    own): preparing data, the final evaluation, a prediction. Not an ``Exception``, so that no
    ``except Exception`` on the way swallows it."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`StopRequested` for the ``with`` block, whatever handler was there
    (a training loop installs its own and puts the previous one back when it ends; ``ray.init()``
    installs Ray's, which :func:`ls_train.ray_session.start_ray` replaces by the caller's again)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise StopRequested

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SigtermPolicy:
    """SIGTERM over a whole command, from Hydra's start to the process's exit.

    While a job works (:meth:`working`), SIGTERM raises :class:`StopRequested` (the job ends with
    "stopped on request", status 0). Outside the work it interrupts nothing: the signal is
    remembered, so that a job that has not started yet (Hydra still composing its config, or the
    next job of a multirun) stops before it starts, and after the work is done it is noted in one
    line and the command ends with its status: a late SIGTERM (a SLURM time limit during the
    teardown) never turns a finished run into a killed one (exit status 143).

    Args:
        prog: The command's name, for the message.
    """

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.requested = False
        self.finished_jobs = 0
        self._working = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> SigtermPolicy:
        """Install the handler (in the main thread only; elsewhere this does nothing)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def restore(self) -> None:
        """Put back the handler that was there before :meth:`install`."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self._working:
            raise StopRequested
        self.requested = True
        if self.finished_jobs:
            note = f"{self.prog}: SIGTERM after the work was done: nothing to stop, it ends with its status\n"
            os.write(2, note.encode())  # not print(): the signal may have interrupted a print

    @contextmanager
    def working(self) -> Iterator[None]:
        """The block of a job's work; :class:`StopRequested` at once when a SIGTERM came before it."""
        if self.requested:
            raise StopRequested
        self._working = True
        try:
            yield
        finally:
            self._working = False
            self.finished_jobs += 1


def run_app(app: App, argv: Sequence[str] | None = None, *, process: bool | None = None) -> int:
    """Run ``app`` on ``argv`` (default: ``sys.argv[1:]``) as Hydra's ``hydra.main`` would.

    ``process``: this call is the whole process (a console script; default: when ``argv`` is None),
    which ends when this returns: the SIGTERM handler of :class:`SigtermPolicy` then stays
    installed until the process exits. Otherwise the previous handler is put back on return."""
    from hydra import version
    from hydra._internal.utils import _run_hydra

    from ls_train.config import ConfigError
    from ls_train.ray_session import RayStartError
    from ls_train.trainer import CheckpointError

    global ACTIVE
    is_process = argv is None if process is None else process
    argv = list(sys.argv[1:] if argv is None else argv)
    statuses: list[int] = []
    sigterm = SigtermPolicy(app.prog)

    def task(cfg: DictConfig) -> int:
        try:
            plain = _finish(app, cfg)
        except (ConfigError, CheckpointError) as exc:
            print(f"{app.prog}: error: {exc}", file=sys.stderr)
            statuses.append(2)
            return 2
        try:
            with sigterm.working():
                statuses.append(app.task(plain))
        except RayStartError as exc:  # after work started, not a refused input: status 1
            print(f"{app.prog}: error: {exc}", file=sys.stderr)
            statuses.append(1)
        except (StopRequested, Exception) as exc:
            if not _stop_requested_in(exc):
                statuses.append(1)  # a failure while working (Hydra prints it), not a refused input (2)
                raise
            print(f"{app.prog}: stopped on request (SIGTERM); re-run the same command to go on")
            statuses.append(0)
        return statuses[-1]

    # Hydra adds the package of a task function's module as the primary config path even with
    # config_path=None (pkg://ls_train here); as a "__main__" function it adds none, as documented
    task.__module__ = "__main__"

    try:
        parser, args = _prepare(app, argv)
    except (_Refused, ConfigError, CheckpointError) as exc:
        print(f"{app.prog}: error: {exc}", file=sys.stderr)
        return 2
    _register_resolvers()
    version.setbase("1.3")
    ACTIVE = True
    sigterm.install()
    try:
        _run_hydra(args=args, args_parser=parser, task_function=task, config_path=None, config_name=None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 1 and not statuses:  # Hydra refused the command line or the config
            hint = _explain(args)
            if hint:
                print(f"{app.prog}: error: {hint}", file=sys.stderr)
            return 2
        return max([code, *statuses])
    finally:
        ACTIVE = False
        if not is_process:
            sigterm.restore()
    return max(statuses, default=0)


# -- the results of a run, and the summary of a multirun ---------------------------------------


def write_result(run_dir: Path, status: int, **fields: Any) -> Path:
    """``<run_dir>/result.json``: the exit status and ``fields`` (checkpoints, final metrics)."""
    from ls_train.atomic import atomic_write

    text = json.dumps({"status": status, **fields}, indent=2, default=str)
    return atomic_write(Path(run_dir) / RESULT_FILE, lambda f: f.write(text.encode()))


def _job_row(job: Path) -> dict[str, Any]:
    overrides_file = job / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
    result_file = job / RESULT_FILE
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    metrics = result.get("metrics") or {}
    row = {"job": job.name, "overrides": list(map(str, overrides)), "status": result.get("status", "-")}
    for name in SUMMARY_METRICS:
        value = metrics.get(name)
        row[name] = f"{value:.4f}" if isinstance(value, int | float) else "-"
    return row


def summary_table(sweep_dir: Path) -> str:
    """One line per job of the sweep in ``sweep_dir``: the overrides that differ between the jobs,
    the job's exit status (``-``: it wrote no result) and its final metrics."""
    jobs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    rows = [_job_row(job) for job in sorted(jobs, key=lambda p: int(p.name))]
    if not rows:
        return f"no jobs in {sweep_dir}"
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in common) or "-"
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in rows[0]}
    lines = ["  ".join(c.ljust(w) for c, w in widths.items())]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in widths.items()) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


class MultirunSummary(Callback):
    """Hydra callback: at the end of a multirun, print :func:`summary_table` of its sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        print(f"\nmultirun of {sweep_dir}:\n{summary_table(sweep_dir)}", flush=True)


def metrics_of(summary: Mapping[str, Any] | None) -> dict[str, float]:
    """The numbers of an evaluation summary (for :func:`write_result`)."""
    return {k: float(v) for k, v in (summary or {}).items() if isinstance(v, int | float)}
