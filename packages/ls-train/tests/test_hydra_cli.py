"""Hydra's own command line on ls-train, ls-evaluate and ls-predict (see ls_train.hydra_app):
--help, --hydra-help, --cfg/--resolve/--package, --info, -cp/-cn/-cd, --shell-completion through the
installed console scripts, and a two-job multirun of a tiny in-process training."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ls_train.cli import evaluate_main, train_main
from ls_train.hydra_app import summary_table

BIN = Path(sys.executable).parent


def run(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = BIN / script
    if not exe.exists():
        pytest.fail(f"{script} is not installed next to {sys.executable}")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def user_configs(tmp_path: Path) -> Path:
    """A working directory whose ./configs adds a trainer option and an experiment."""
    (tmp_path / "configs" / "trainer").mkdir(parents=True)
    (tmp_path / "configs" / "trainer" / "fast.yaml").write_text("max_steps_per_epoch: 3\n")
    (tmp_path / "configs" / "my_experiment.yaml").write_text(
        "defaults:\n  - quickstart\n  - override trainer: fast\n  - _self_\ntrainer:\n  run_name: mine\n"
    )
    return tmp_path


@pytest.mark.slow(seconds=14)
def test_help_lists_experiments_and_config_groups_of_the_package_and_of_configs(user_configs: Path) -> None:
    for script in ("ls-train", "ls-evaluate", "ls-predict"):
        out = run(script, "--help", cwd=user_configs)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"{script}: ") and "--config-name" in out.stdout
        assert "quickstart" in out.stdout and "my_experiment" in out.stdout
        assert "== Configuration groups ==" in out.stdout
        assert "models/backbones: hiera_fpn, resnet18_fpn_small, resnet_fpn, vitdet" in out.stdout
        assert "trainer: default, fast" in out.stdout  # ./configs/trainer/fast.yaml
    hydra_help = run("ls-train", "--hydra-help", cwd=user_configs)
    assert (
        hydra_help.returncode == 0
        and "--multirun" in hydra_help.stdout
        and "hydra/launcher" in hydra_help.stdout
    )


@pytest.mark.slow(seconds=13)
def test_cfg_resolve_and_package(user_configs: Path) -> None:
    job = run(
        "ls-train", "-cn", "my_experiment", "trainer.epochs=4", "--cfg", "job", "--resolve", cwd=user_configs
    )
    assert job.returncode == 0, job.stderr
    assert (
        "epochs: 4" in job.stdout
        and "max_steps_per_epoch: 3" in job.stdout
        and "run_name: mine" in job.stdout
    )
    assert "${" not in job.stdout  # resolved
    package = run("ls-train", "-cn", "quickstart", "--cfg", "job", "--package", "trainer", cwd=user_configs)
    assert package.stdout.startswith("# @package trainer") and "models:" not in package.stdout
    hydra = run("ls-train", "-cn", "quickstart", "--cfg", "hydra", cwd=user_configs)
    assert hydra.stdout.startswith("hydra:") and "\nmodels:" not in hydra.stdout
    everything = run("ls-train", "-cn", "my_experiment", "--cfg", "all", "--resolve", cwd=user_configs)
    assert everything.returncode == 0 and "trainer:" in everything.stdout
    assert f"dir: runs{os.sep}mine" in everything.stdout  # the run folder: runs_root/run_name


@pytest.mark.slow(seconds=19)
def test_info_config_path_and_config_dir(
    user_configs: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    info = run("ls-train", "--info", "searchpath", cwd=user_configs)
    assert info.returncode == 0
    assert f"file://{user_configs / 'configs'}" in info.stdout and "pkg://ls_train.configs" in info.stdout
    other = tmp_path_factory.mktemp("other")
    (other / "elsewhere.yaml").write_text("defaults:\n  - quickstart\n  - _self_\ntrainer:\n  epochs: 7\n")
    for flag in ("--config-path", "--config-dir"):
        out = run(
            "ls-train",
            flag,
            str(other),
            "-cn",
            "elsewhere",
            "--cfg",
            "job",
            "--package",
            "trainer",
            cwd=user_configs,
        )
        assert out.returncode == 0, out.stderr
        assert "epochs: 7" in out.stdout
    defaults = run("ls-train", "-cn", "my_experiment", "--info", "defaults", cwd=user_configs)
    assert "trainer/fast" in defaults.stdout


@pytest.mark.slow(seconds=12)
def test_shell_completion(user_configs: Path) -> None:
    install = run("ls-train", "--shell-completion", "install=bash", cwd=user_configs)
    assert install.returncode == 0 and "complete" in install.stdout and "ls-train" in install.stdout
    query = run(
        "ls-train",
        "-sc",
        "query=bash",
        cwd=user_configs,
        env={"COMP_LINE": "ls-train trainer=", "COMP_POINT": "17"},
    )
    assert "trainer=default" in query.stdout and "trainer=fast" in query.stdout


def test_hydra_refusals_exit_2(
    user_configs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(user_configs)
    assert train_main(["-cn", "no_such_experiment"]) == 2
    assert "Cannot find primary config 'no_such_experiment'" in capsys.readouterr().err
    assert train_main(["-cn", "quickstart", "trainer=no_such_option"]) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert train_main(["trainer.epochs=2"]) == 2
    assert "give --config-name=NAME" in capsys.readouterr().err
    assert evaluate_main(["trainer.epochs=2"]) == 2
    assert "checkpoint=DIR" in capsys.readouterr().err
    assert not (user_configs / "runs").exists() and not (user_configs / "outputs").exists()


def test_a_checkpoint_without_its_config_is_refused_naming_config_name(tmp_path: Path, capsys) -> None:
    from ls_train.trainer.checkpoint import save_state

    path = save_state(tmp_path / "old", {"model": {}})
    assert evaluate_main([f"checkpoint={path}"]) == 2
    err = capsys.readouterr().err
    assert "carries no config" in err and "--config-name" in err


def test_a_setting_newer_than_the_checkpoint_is_overridden_without_plus(
    tmp_path: Path, tiny_overrides: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from ls_train.checkpoint_config import CONFIG_KEY
    from ls_train.config import load_config
    from ls_train.trainer.checkpoint import save_state

    cfg = load_config("quickstart", tiny_overrides(tmp_path, "cluster=local"))
    del cfg["evaluation"]["min_visible_fraction"]  # written before the setting existed
    path = save_state(tmp_path / "old", {"model": {}, CONFIG_KEY: json.dumps(cfg)})
    override = "evaluation.min_visible_fraction=0.25"
    assert evaluate_main([f"checkpoint={path}", override, "--cfg", "job", "--package", "evaluation"]) == 0
    out = capsys.readouterr()
    assert "min_visible_fraction: 0.25" in out.out
    assert "evaluation.min_visible_fraction=0.5" in out.err  # named, with the default it would take


@pytest.mark.slow(seconds=17)
def test_a_multirun_trains_each_job_in_its_own_run_folder_and_ends_with_a_summary(
    tmp_path: Path,
    tiny_overrides: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    common = tiny_overrides(tmp_path, "trainer.epochs=1", "trainer.warmup_iters=1", "cluster=local")
    assert train_main(["-cn", "quickstart", *common, "-m", "trainer.lr=1e-3,3e-4"]) == 0
    out = capsys.readouterr().out
    sweeps = list((tmp_path / "runs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job, lr in (("0", "0.001"), ("1", "0.0003")):
        folder = sweeps[0] / job
        assert f"trainer.lr={lr}" in (folder / ".hydra" / "overrides.yaml").read_text()
        assert list((folder / "checkpoints").glob("checkpoint_*")) and (folder / "result.json").exists()
    table = summary_table(sweeps[0]).splitlines()
    assert table[0].split()[:4] == ["job", "overrides", "status", "ap@50"]
    assert table[1].split()[:3] == ["0", "trainer.lr=0.001", "0"]
    assert table[2].split()[:3] == ["1", "trainer.lr=0.0003", "0"]
    assert f"multirun of {sweeps[0]}" in out and "\n".join(table) in out
    assert "Launching 2 jobs locally" in out


def test_sigterm_outside_a_training_loop_stops_with_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from ls_train.hydra_app import App, run_app

    reached = []

    def task(cfg: dict) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. during the final evaluation
        reached.append("after the signal")
        return 1

    previous = signal.getsignal(signal.SIGTERM)
    assert run_app(App("ls-evaluate", task), ["-cn", "quickstart", "cluster=local"]) == 0
    assert "ls-evaluate: stopped on request (SIGTERM)" in capsys.readouterr().out
    assert not reached and signal.getsignal(signal.SIGTERM) is previous


def test_sigterm_that_a_library_wraps_in_another_error_still_stops_with_status_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ray's ray.wait checks signals in C: the StopRequested our handler raises there comes out as
    ``SystemError: ... returned a result with an exception set``, caused by it (seen in
    bench-faults: ls-predict with Ray, SIGTERM to the driver)."""
    import signal

    from ls_train.hydra_app import App, run_app

    def wait_in_c() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as exc:
            raise SystemError("<cyfunction CoreWorker.wait> returned a result with an exception set") from exc

    def task(cfg: dict) -> int:
        wait_in_c()
        return 1

    assert run_app(App("ls-predict", task), ["-cn", "quickstart", "cluster=local"]) == 0
    assert "ls-predict: stopped on request (SIGTERM)" in capsys.readouterr().out


def test_a_failure_while_working_exits_1_not_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit status 2 means refused input; an error raised by the command's work (Ray that could
    not start, a crash) is 1, and Hydra prints it."""
    from ls_train.hydra_app import App, run_app

    def task(cfg: dict) -> int:
        raise RuntimeError("The current node timed out during startup")

    assert run_app(App("ls-evaluate", task), ["-cn", "quickstart", "cluster=local"]) == 1
    assert "The current node timed out during startup" in capsys.readouterr().err


SIGNALLING_MODULE = '''
import atexit
import os
import signal
import sys
import time

from hydra.experimental.callback import Callback

from ls_train.hydra_app import App, run_app


def sigterm_to_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # the handler runs here


class SigtermAtJobStart(Callback):
    """Before the task: while Hydra still sets the job up."""

    def on_job_start(self, config, **kwargs) -> None:
        sigterm_to_self()


class SigtermAtJobEnd(Callback):
    """After the task returned: Hydra's teardown of the job."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        sigterm_to_self()


def task(cfg: dict) -> int:
    print("working", flush=True)
    atexit.register(sigterm_to_self)  # after run_app returned: the interpreter's exit
    return 0


if __name__ == "__main__":
    sys.exit(run_app(App("ls-evaluate", task)))
'''


@pytest.fixture
def signalling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module (``ls_test_signalling``, importable here and in child processes) whose Hydra callbacks
    and task send SIGTERM to their own process at chosen moments."""
    (tmp_path / "ls_test_signalling.py").write_text(SIGNALLING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ls_test_signalling.py"


@pytest.mark.slow(seconds=16)
def test_a_sigterm_after_the_work_is_done_ends_the_command_with_its_status(signalling: Path) -> None:
    """A SIGTERM in Hydra's teardown of the job and one during the interpreter's exit (after run_app
    returned, where the default handler would kill the process: status 143) are noted; the
    command ends with the status of its work."""
    callback = "+hydra.callbacks.late._target_=ls_test_signalling.SigtermAtJobEnd"
    done = subprocess.run(
        [sys.executable, str(signalling), "-cn", "quickstart", "cluster=local", callback],
        capture_output=True, text=True, timeout=300, cwd=signalling.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("working") == 1 and "stopped on request" not in done.stdout
    notes = done.stderr.count("ls-evaluate: SIGTERM after the work was done: nothing to stop")
    assert notes == 2, done.stderr


def test_a_sigterm_before_the_work_starts_stops_it_before_it_starts(
    signalling: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    import ls_test_signalling  # type: ignore[import-not-found]

    from ls_train.hydra_app import App, run_app

    previous = signal.getsignal(signal.SIGTERM)
    callback = "+hydra.callbacks.early._target_=ls_test_signalling.SigtermAtJobStart"
    argv = ["-cn", "quickstart", "cluster=local", callback]
    assert run_app(App("ls-evaluate", ls_test_signalling.task), argv) == 0
    out = capsys.readouterr().out
    assert "ls-evaluate: stopped on request (SIGTERM)" in out and "working" not in out
    assert signal.getsignal(signal.SIGTERM) is previous
