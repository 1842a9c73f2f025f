"""Tests of scripts/slurm: syntax, shellcheck, and the sbatch scripts run on one machine with
stand-ins for SLURM and Ray (what a single real node cannot show: several nodes, a worker node
that cannot reach the head, addresses). ``test_slurm_real.py`` runs them on a real SLURM.

The end-to-end tests here run ``train.sbatch`` / ``evaluate.sbatch`` / ``predict.sbatch`` with
bash, with stand-in ``scontrol``, ``srun``, ``hostname``, ``ray`` and
``ls-train``/``ls-evaluate``/``ls-predict`` executables first on PATH and a stand-in ``ray``
Python module (used by the node-count check) first on PYTHONPATH:

- ``scontrol show hostnames`` lists ``node1`` and ``node2``; ``scontrol requeue`` is logged.
- ``srun`` logs its options and runs its command with ``FAKE_NODE`` set to the ``--nodelist``
  node; a TCP probe of the head (``/dev/tcp/...``) succeeds unless run on ``UNREACHABLE_FROM``.
- ``hostname --ip-address`` prints two addresses for node1 (the script must take the first);
  ``LOOPBACK_NAMES=1`` makes every node's name resolve to 127.0.1.1, ``LOOPBACK_ONLY=1`` gives
  the nodes no other address either.
- ``ray start ... --block`` marks its node alive in a state folder until it gets SIGTERM, which
  it logs; the Python ``ray.nodes()`` stand-in reports the nodes marked alive.
- ``ls-train`` logs its arguments, ``RAY_AUTH_MODE`` and how many Ray nodes were alive when it
  started; when told to block, it waits for a signal and logs it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "scripts" / "slurm"
SCRIPTS = [
    SLURM_DIR / "train.sbatch",
    SLURM_DIR / "evaluate.sbatch",
    SLURM_DIR / "predict.sbatch",
    SLURM_DIR / "ray-cluster.sh",
]
HEAD_IP = "10.0.0.1"
RAY_PORT = "6400"
RUN_TIMEOUT_S = 60  # a hang guard only; the runs take about a second

_STUBS = {
    "scontrol": r"""
        echo "scontrol $*" >> "$STUB_LOG"
        if [[ $1 == show && $2 == hostnames ]]; then
            [[ $3 == "node[1-2]" ]] || { echo "stand-in scontrol: unexpected node list $3" >&2; exit 1; }
            printf 'node1\nnode2\n'
        elif [[ $1 != requeue ]]; then
            echo "stand-in scontrol: unexpected arguments $*" >&2; exit 1
        fi
    """,
    "srun": r"""
        echo "srun $*" >> "$STUB_LOG"
        node=""
        while [[ $# -gt 0 && $1 == -* ]]; do
            case $1 in --nodelist=*) node=${1#--nodelist=} ;; esac
            shift
        done
        [[ -n $node ]] || { echo "stand-in srun: no --nodelist" >&2; exit 1; }
        if [[ " $* " == *"/dev/tcp/"* ]]; then
            echo "node=$node probe $*" >> "$STUB_LOG"
            [[ ${UNREACHABLE_FROM:-} != "$node" ]]
            exit
        fi
        FAKE_NODE=$node exec "$@"
    """,
    "hostname": r"""
        case ${FAKE_NODE:-} in
            node1) resolved="10.0.0.1 192.168.7.1" all="10.0.0.1 192.168.7.1 fd00::1" ;;
            node2) resolved="10.0.0.2" all="10.0.0.2" ;;
            *) echo "stand-in hostname: not run through srun" >&2; exit 1 ;;
        esac
        if [[ -n ${LOOPBACK_NAMES:-} ]]; then resolved="127.0.1.1"; fi
        if [[ -n ${LOOPBACK_ONLY:-} ]]; then resolved="127.0.1.1" all=""; fi
        case $1 in
            --ip-address) echo "$resolved" ;;
            --all-ip-addresses) echo "$all" ;;
            *) echo "stand-in hostname: unexpected $*" >&2; exit 1 ;;
        esac
    """,
    "ray": r"""
        node=${FAKE_NODE:-batch}
        echo "node=$node ray $*" >> "$STUB_LOG"
        echo "node=$node ray sees RAY_AUTH_MODE=${RAY_AUTH_MODE:-}" >> "$STUB_LOG"
        [[ $1 == start ]] || exit 0
        if [[ -n ${FAIL_RAY_ON:-} && $node == "$FAIL_RAY_ON" ]]; then
            echo "stand-in ray: cannot start on $node" >&2; exit 7
        fi
        [[ " $* " == *" --block "* ]] || exit 0
        if [[ ${SILENT_RAY_ON:-} != "$node" ]]; then
            touch "$STUB_STATE/alive/$node"
        fi
        stop() {
            echo "node=$node ray got TERM" >> "$STUB_LOG"
            rm -f "$STUB_STATE/alive/$node"
            kill "$sleeper" 2>/dev/null
            exit 0
        }
        trap stop TERM
        while :; do
            sleep 30 &
            sleeper=$!
            wait "$sleeper"
        done
    """,
    "ls-train": r"""
        name=$(basename "$0")
        alive=$(find "$STUB_STATE/alive" -type f | wc -l)
        auth=${RAY_AUTH_MODE:-}
        echo "node=${FAKE_NODE:-batch} $name RAY_AUTH_MODE=$auth alive_nodes=$alive" >> "$STUB_LOG"
        printf '%s\n' "$@" > "$STUB_STATE/$name.args"
        if [[ -n ${BLOCK_TRAINER:-} ]]; then
            on_signal() {
                echo "$name got $1" >> "$STUB_LOG"
                kill "$sleeper" 2>/dev/null
                exit "${TRAINER_RC:-0}"
            }
            trap 'on_signal TERM' TERM
            trap 'on_signal INT' INT
            touch "$STUB_STATE/$name.started"
            while :; do
                sleep 30 &
                sleeper=$!
                wait "$sleeper"
            done
        fi
        exit "${TRAINER_RC:-0}"
    """,
}

_FAKE_RAY_MODULE = """
    from __future__ import annotations

    import os


    def init(*, address, **kwargs):
        if address != os.environ["EXPECTED_RAY_ADDRESS"]:
            raise ConnectionError(f"stand-in ray: nothing at {address}")


    def nodes():
        alive = os.path.join(os.environ["STUB_STATE"], "alive")
        return [{"NodeManagerHostname": name, "Alive": True} for name in sorted(os.listdir(alive))]


    def shutdown():
        pass
"""


def _write_executable(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict[str, object]:
    """A stand-in SLURM + Ray environment; returns the env for the script and the paths."""
    bin_dir, state, pylib = tmp_path / "bin", tmp_path / "state", tmp_path / "pylib"
    for folder in (bin_dir, state / "alive", pylib / "ray", tmp_path / "home", tmp_path / "tmp"):
        folder.mkdir(parents=True)
    for name, body in _STUBS.items():
        _write_executable(bin_dir / name, body)
    (bin_dir / "ls-evaluate").symlink_to(bin_dir / "ls-train")
    (bin_dir / "ls-predict").symlink_to(bin_dir / "ls-train")
    (bin_dir / "python").symlink_to(sys.executable)
    (pylib / "ray" / "__init__.py").write_text(textwrap.dedent(_FAKE_RAY_MODULE).lstrip())
    log = tmp_path / "calls.log"
    log.touch()
    workdir = tmp_path / "submit"
    workdir.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),  # the nodes' pid files of `ray start`
        "PYTHONPATH": str(pylib),
        "STUB_LOG": str(log),
        "STUB_STATE": str(state),
        "EXPECTED_RAY_ADDRESS": f"{HEAD_IP}:{RAY_PORT}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_CPUS_PER_TASK": "8",
        "SLURM_GPUS_ON_NODE": "2",
        "RAY_PORT": RAY_PORT,
        "RAY_WAIT_POLL": "0.05",
        "RAY_WAIT_TIMEOUT": "20",
        "RAY_STOP_TIMEOUT": "10",
    }
    return {"env": env, "log": log, "state": state, "cwd": workdir}


def _calls(fake: dict[str, object]) -> list[str]:
    return Path(fake["log"]).read_text().splitlines()


def _args(fake: dict[str, object], name: str) -> list[str]:
    return (Path(fake["state"]) / f"{name}.args").read_text().splitlines()


def _start(
    fake: dict[str, object], script: str, args: tuple[str, ...], env: dict[str, str]
) -> subprocess.Popen[str]:
    """The script in a session of its own, so that every stand-in it starts can be killed after."""
    return subprocess.Popen(
        ["bash", str(SLURM_DIR / script), *args],
        env=env,
        cwd=fake["cwd"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _kill_leftovers(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _run(fake: dict[str, object], script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    process = _start(fake, script, args, {**fake["env"], **env})
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        _kill_leftovers(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _index(calls: list[str], prefix: str) -> int:
    matches = [i for i, line in enumerate(calls) if line.startswith(prefix)]
    assert matches, f"no call starting with {prefix!r} in:\n" + "\n".join(calls)
    return matches[0]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path, shellcheck: str) -> None:
    result = subprocess.run(
        [shellcheck, "--external-sources", "--severity=style", script.name],
        cwd=SLURM_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_train_starts_ray_then_ls_train_then_stops_ray(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch", "--config-name=quickstart", "trainer.epochs=3", "+note=a b")
    assert result.returncode == 0, result.stderr
    calls = _calls(fake_slurm)

    head = _index(calls, "node=node1 ray start")
    assert f"--head --node-ip-address={HEAD_IP} --port={RAY_PORT}" in calls[head]
    assert "--num-cpus=8 --num-gpus=2" in calls[head] and calls[head].endswith("--block")
    worker = _index(calls, "node=node2 ray start")
    assert f"--address={HEAD_IP}:{RAY_PORT}" in calls[worker] and calls[worker].endswith("--block")
    assert "--head" not in calls[worker]
    srun_head = calls[_index(calls, "srun ") : head]
    srun_head = [line for line in srun_head if " ray start --head " in line]
    assert len(srun_head) == 1 and "--nodelist=node1 " in srun_head[0]
    assert "--gpus-per-node=2" in srun_head[0] and "--cpus-per-task=8" in srun_head[0]

    trainer = _index(calls, "node=batch ls-train")
    assert calls[trainer].endswith("alive_nodes=2"), "ls-train started before both Ray nodes joined"
    assert _args(fake_slurm, "ls-train") == [
        "--config-name=quickstart",
        f"cluster.address={HEAD_IP}:{RAY_PORT}",
        "cluster.num_workers=4",
        "cluster.use_gpu=true",
        "cluster.resources_per_worker=null",
        "cluster.resources_per_worker={CPU:4,GPU:1}",
        "trainer.epochs=3",
        "+note=a b",
    ]
    stops = [_index(calls, f"node={node} ray got TERM") for node in ("node1", "node2")]
    assert head < worker < trainer < min(stops)
    assert not any(Path(fake_slurm["state"], "alive").iterdir()), "Ray still running after the job"


def test_train_cpu_only_defaults(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch", SLURM_GPUS_ON_NODE="0")
    assert result.returncode == 0, result.stderr
    assert _args(fake_slurm, "ls-train") == [
        "--config-name=config_mrcnn_resnet",
        f"cluster.address={HEAD_IP}:{RAY_PORT}",
        "cluster.num_workers=2",
        "cluster.use_gpu=false",
        "cluster.resources_per_worker=null",
        "cluster.resources_per_worker={CPU:8}",
    ]
    assert not any("--gpus-per-node" in line for line in _calls(fake_slurm))


@pytest.mark.parametrize(
    ("requested", "gpus"),
    [(None, 2), ("0", 0), ("1", 1), ("a100:1", 1)],
    ids=["allocation", "request-0", "request-1", "typed-request-1"],
)
def test_gpus_per_node_request_wins_over_an_exclusive_allocation(
    fake_slurm: dict[str, object], requested: str | None, gpus: int
) -> None:
    """An --exclusive job gets every GPU of its nodes (SLURM_GPUS_ON_NODE=2 here, as on the real
    SLURM of test_slurm_real.py), whatever its --gpus-per-node (SLURM_GPUS_PER_NODE) asks: Ray
    offers the GPUs asked for, the allocation only when none were asked for by count per node."""
    env = {"SLURM_GPUS_ON_NODE": "2"} | ({} if requested is None else {"SLURM_GPUS_PER_NODE": requested})
    result = _run(fake_slurm, "train.sbatch", **env)
    assert result.returncode == 0, result.stderr
    calls = _calls(fake_slurm)
    assert f"--num-cpus=8 --num-gpus={gpus}" in calls[_index(calls, "node=node1 ray start")]
    srun_ray = [line for line in calls if line.startswith("srun ") and " ray start " in line]
    assert len(srun_ray) == 2
    assert all((f"--gpus-per-node={gpus}" in line) == (gpus > 0) for line in srun_ray), srun_ray
    args = _args(fake_slurm, "ls-train")
    assert f"cluster.num_workers={2 * max(gpus, 1)}" in args
    assert f"cluster.use_gpu={'true' if gpus else 'false'}" in args
    source = "SLURM_GPUS_ON_NODE=2"
    if requested is not None:
        source = f"--gpus-per-node={requested} of SLURM_GPUS_ON_NODE=2"
    assert f"{gpus} GPUs ({source}" in result.stdout, result.stdout


@pytest.mark.parametrize("config_name", ["quickstart", "config_mrcnn_resnet"])  # cluster=cpu, cluster=gpu
@pytest.mark.parametrize("gpus", ["0", "2"])
def test_cluster_overrides_replace_the_configs_resources(
    fake_slurm: dict[str, object], config_name: str, gpus: str
) -> None:
    """The script's overrides, composed with ls-train's own config loader, replace the config's
    cluster.resources_per_worker rather than merge into it (Hydra merges dict overrides), and Ray
    Train accepts the result: before, {CPU:8} on cluster=gpu kept its GPU:1 beside use_gpu=false
    (Ray Train: "`use_gpu` is False but `GPU` was found"), and {CPU:4,GPU:1} on cluster=cpu was
    refused ("Could not override 'cluster.resources_per_worker'")."""
    import ray.train

    from ls_train.config import load_config

    result = _run(fake_slurm, "train.sbatch", f"--config-name={config_name}", SLURM_GPUS_ON_NODE=gpus)
    assert result.returncode == 0, result.stderr
    args = _args(fake_slurm, "ls-train")
    assert args[0] == f"--config-name={config_name}"
    cluster = load_config(config_name, args[1:])["cluster"]
    expected = {"CPU": 4, "GPU": 1} if gpus == "2" else {"CPU": 8}
    assert (cluster["use_gpu"], dict(cluster["resources_per_worker"])) == (gpus == "2", expected)
    ray.train.ScalingConfig(  # raises ValueError where use_gpu and the GPU resource disagree
        num_workers=cluster["num_workers"],
        use_gpu=cluster["use_gpu"],
        resources_per_worker=dict(cluster["resources_per_worker"]),
    )


def test_trainer_status_is_the_job_status_and_ray_still_stops(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch", TRAINER_RC="3")
    assert result.returncode == 3
    calls = _calls(fake_slurm)
    assert _index(calls, "node=node1 ray got TERM") > _index(calls, "node=batch ls-train")


@pytest.mark.parametrize(("requeue", "status"), [("0", "0"), ("1", "0"), ("1", "143")])
def test_sigterm_reaches_ls_train(fake_slurm: dict[str, object], requeue: str, status: str) -> None:
    started = Path(fake_slurm["state"]) / "ls-train.started"
    env = {**fake_slurm["env"], "BLOCK_TRAINER": "1", "REQUEUE_ON_TERM": requeue, "TRAINER_RC": status}
    process = _start(fake_slurm, "train.sbatch", ("trainer.epochs=3",), env)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not started.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the stand-in ls-train never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        _kill_leftovers(process)
    assert process.returncode == int(status), stderr  # 0: the trainer checkpointed and stopped
    calls = _calls(fake_slurm)
    got_term = _index(calls, "ls-train got TERM")
    assert _index(calls, "node=node1 ray got TERM") > got_term
    assert _index(calls, "node=node2 ray got TERM") > got_term
    # requeued only after Ray has stopped, and only when ls-train stopped on request (status 0)
    requeued = "scontrol requeue 4242" in calls
    assert requeued == (requeue == "1" and status == "0")
    if requeued:
        assert calls.index("scontrol requeue 4242") > _index(calls, "node=node1 ray got TERM")


def test_evaluate_passes_checkpoint_and_overrides(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "evaluate.sbatch", "evaluation.batch_size=2", CHECKPOINT="runs/x/model.pt")
    assert result.returncode == 0, result.stderr
    assert _args(fake_slurm, "ls-evaluate") == [
        "--config-name=skittlez_evaluation_resnet",
        f"cluster.address={HEAD_IP}:{RAY_PORT}",
        "cluster.num_workers=4",
        "cluster.use_gpu=true",
        "cluster.resources_per_worker=null",
        "cluster.resources_per_worker={CPU:4,GPU:1}",
        "evaluation.ray_num_tasks=4",
        "checkpoint=runs/x/model.pt",
        "evaluation.batch_size=2",
    ]
    calls = _calls(fake_slurm)
    assert _index(calls, "node=node1 ray got TERM") > _index(calls, "node=batch ls-evaluate")


def test_predict_spreads_tiles_over_the_workers(fake_slurm: dict[str, object]) -> None:
    result = _run(
        fake_slurm, "predict.sbatch", "input=vol.ome.zarr", "output=out.ome.zarr", CHECKPOINT="runs/x"
    )
    assert result.returncode == 0, result.stderr
    assert _args(fake_slurm, "ls-predict") == [
        "--config-name=config_mrcnn_resnet",
        f"cluster.address={HEAD_IP}:{RAY_PORT}",
        "cluster.num_workers=4",
        "cluster.use_gpu=true",
        "cluster.resources_per_worker=null",
        "cluster.resources_per_worker={CPU:4,GPU:1}",
        "predict.executor=ray",
        "predict.num_workers=4",
        "predict.threads_per_worker=4",
        "predict.gpus_per_worker=1",
        "predict.device=cuda",
        "checkpoint=runs/x",
        "input=vol.ome.zarr",
        "output=out.ome.zarr",
    ]


def test_failed_ray_start_stops_before_training(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch", FAIL_RAY_ON="node2")
    assert result.returncode != 0
    assert "'ray start' on node2 exited (status 7)" in result.stderr
    calls = _calls(fake_slurm)
    assert not any("ls-train" in line for line in calls)
    assert "node=node1 ray got TERM" in calls


def test_missing_node_times_out_with_count(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch", SILENT_RAY_ON="node2", RAY_WAIT_TIMEOUT="1")
    assert result.returncode != 0
    assert "1/2 Ray nodes alive" in result.stderr
    calls = _calls(fake_slurm)
    assert not any("ls-train" in line for line in calls)
    assert "node=node1 ray got TERM" in calls and "node=node2 ray got TERM" in calls


def test_outside_slurm_is_a_clear_error(fake_slurm: dict[str, object]) -> None:
    fake_slurm["env"] = {
        key: value for key, value in fake_slurm["env"].items() if key != "SLURM_JOB_NODELIST"
    }
    result = _run(fake_slurm, "train.sbatch")
    assert result.returncode == 2
    assert "SLURM_JOB_NODELIST is unset" in result.stderr
    assert _calls(fake_slurm) == []


def test_ray_start_alone_gets_sigterm_the_head_last(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch")
    assert result.returncode == 0, result.stderr
    calls = _calls(fake_slurm)
    # SIGTERM to srun would make srun SIGKILL its task: a step beside it signals `ray start` alone
    stops = [line for line in calls if line.startswith("srun --overlap ")]
    assert len(stops) == 2 and "--nodelist=node2 " in stops[0] and "--nodelist=node1 " in stops[1]
    assert _index(calls, "node=node2 ray got TERM") < _index(calls, "node=node1 ray got TERM")
    assert "Ray stopped" in result.stdout and "killing it" not in result.stdout
    assert not list(Path(fake_slurm["env"]["TMPDIR"]).iterdir()), "pid files left behind"


def test_a_node_that_cannot_reach_the_head_ends_the_job_naming_the_address(
    fake_slurm: dict[str, object],
) -> None:
    result = _run(fake_slurm, "train.sbatch", UNREACHABLE_FROM="node2")
    assert result.returncode == 1
    assert f"node2 cannot reach the Ray head at {HEAD_IP}:{RAY_PORT} (node1) within 10 s" in result.stderr
    assert "set RAY_HEAD_IP" in result.stderr and "192.168.7.1" in result.stderr  # the head's other addresses
    calls = _calls(fake_slurm)
    assert not any(line.startswith("node=node2 ray start") for line in calls)
    assert not any("ls-train" in line for line in calls)
    assert "node=node1 ray got TERM" in calls


def test_a_head_name_that_resolves_to_loopback_gets_an_interface_address(
    fake_slurm: dict[str, object],
) -> None:
    result = _run(fake_slurm, "train.sbatch", LOOPBACK_NAMES="1")
    assert result.returncode == 0, result.stderr
    calls = _calls(fake_slurm)
    assert f"--node-ip-address={HEAD_IP} " in calls[_index(calls, "node=node1 ray start")]
    assert f"cluster.address={HEAD_IP}:{RAY_PORT}" in _args(fake_slurm, "ls-train")


def test_only_loopback_on_the_head_is_refused_before_ray_starts(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "train.sbatch", LOOPBACK_ONLY="1")
    assert result.returncode == 2
    assert "node1 has no address but loopback for the other nodes to reach" in result.stderr
    assert "127.0.1.1" in result.stderr and "set RAY_HEAD_IP" in result.stderr
    assert not any(" ray start" in line for line in _calls(fake_slurm))


@pytest.mark.parametrize("token", ["file", "variable", "none"])
def test_one_auth_mode_for_every_ray_process(fake_slurm: dict[str, object], token: str) -> None:
    env = {}
    if token == "file":
        (Path(fake_slurm["env"]["HOME"]) / ".ray").mkdir()
        (Path(fake_slurm["env"]["HOME"]) / ".ray" / "auth_token").write_text("0123456789abcdef")
    elif token == "variable":
        env["RAY_AUTH_TOKEN"] = "0123456789abcdef"
    result = _run(fake_slurm, "evaluate.sbatch", **env)
    assert result.returncode == 0, result.stderr
    mode = "disabled" if token == "none" else "token"
    calls = _calls(fake_slurm)
    assert [line for line in calls if "ray sees RAY_AUTH_MODE" in line] == [
        f"node=node1 ray sees RAY_AUTH_MODE={mode}",
        f"node=node2 ray sees RAY_AUTH_MODE={mode}",
    ]
    assert f"RAY_AUTH_MODE={mode} " in calls[_index(calls, "node=batch ls-evaluate")]
    assert f"Ray token authentication {'off' if token == 'none' else 'on'}" in result.stdout


def test_token_auth_asked_for_without_a_token_is_a_clear_error(fake_slurm: dict[str, object]) -> None:
    result = _run(fake_slurm, "predict.sbatch", RAY_AUTH_MODE="token")
    assert result.returncode == 2
    assert "RAY_AUTH_MODE=token but no token was found" in result.stderr
    assert not any(" ray start" in line for line in _calls(fake_slurm))


@pytest.mark.parametrize(
    ("address", "preset", "token", "expected"),
    [
        ("10.0.0.1:6400", None, "file", "token"),  # what `ray start --head` chose with that file
        ("10.0.0.1:6400", None, "variable", "token"),
        ("10.0.0.1:6400", None, None, None),  # no token: Ray's default (disabled)
        ("10.0.0.1:6400", "disabled", "file", "disabled"),  # set by the sbatch scripts: kept
        (None, None, "file", None),  # a local instance: Ray's own choice
    ],
)
def test_ls_train_joins_a_cluster_with_the_auth_mode_ray_start_chose(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    address: str | None,
    preset: str | None,
    token: str | None,
    expected: str | None,
) -> None:
    """ls-train, ls-evaluate and ls-predict joining ``cluster.address`` by hand (outside the sbatch
    scripts, which export RAY_AUTH_MODE): token authentication on exactly when ``ray start --head``
    turns it on, so that the head does not refuse them."""
    from ls_train.config import ClusterConfig
    from ls_train.ray_session import prepare_ray_auth

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if preset is not None:
        monkeypatch.setenv("RAY_AUTH_MODE", preset)
    if token == "file":
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("0123456789abcdef")
    elif token == "variable":
        monkeypatch.setenv("RAY_AUTH_TOKEN", "0123456789abcdef")
    prepare_ray_auth(ClusterConfig(num_workers=1, address=address))
    assert os.environ.get("RAY_AUTH_MODE") == expected
