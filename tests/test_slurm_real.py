"""scripts/slurm on a real single-node SLURM: the sbatch scripts submitted with ``sbatch`` and run by
slurmctld/slurmd with the real ``ray``, ``ls-train``, ``ls-evaluate`` and ``ls-predict`` on tiny
synthetic data (``test_slurm_scripts.py`` covers, with stand-ins, what one node cannot show).

The fixture starts munged, slurmctld and slurmd from Debian's ``munge``, ``slurmctld``, ``slurmd``
and ``slurm-client`` packages in one temporary folder (``slurm.conf``: SlurmUser root,
``proctrack/linuxproc``, ``task/none``, ``select/cons_tres``, no accounting, one node with this
machine's CPUs and memory and two GPUs that SLURM counts and hands out although the machine has
none (``gres.conf``: device files that are links to /dev/null), a CPU partition and a GPU
partition on that node) in about a second, and stops them at the end. The tests are skipped
where SLURM cannot be started (not root, packages missing), unless ``LS_REQUIRE_SLURM=1`` (as in
CI), where they fail.

Four jobs keep the time down: three submitted as the README says for a partition without GPUs
(``--gpus-per-node=0``; about four minutes on two idle cores), then one on the GPU partition
(88 s under a load of 10 on two cores):

- a training job with a Ray token file (``~/.ray/auth_token``) present, ``REQUEUE_ON_TERM=1`` and
  ``--signal=B:TERM@60``, held at a known step until it is asked to stop, whose time limit then
  runs out: SLURM's time-limit signal stops it there (the test sends no signal), it writes a stop
  checkpoint of that step, registered with Ray Train, stops Ray, requeues itself, resumes at that
  step and ends COMPLETED at the step count of an unstopped run (2 epochs of 2 steps).
  ``scancel --batch --signal=TERM``, which delivers the same SIGTERM to the batch script, is
  covered with stand-ins (``test_slurm_scripts.py``);
- then, side by side with one CPU each, an evaluation job (no token file; Ray tasks on its
  cluster) and a prediction job (a token file; Ray tile workers) on the trained checkpoint:
  COMPLETED, with metrics and labels;
- then a training job on the GPU partition, with the script's own ``--gpus-per-node`` scaled
  down to the node's two GPUs: SLURM allocates them, the script starts Ray with them
  (``--num-gpus=2``, which every Ray Train worker sees, from a ``ray start`` job step holding
  GPUs 0,1) and hands ls-train two workers with ``cluster.use_gpu=true`` and one GPU each;
  overrides after the script's keep the workers on the CPU (gloo), as there is no CUDA here.
  ``sbatch --test-only`` checks that evaluate.sbatch and predict.sbatch, with their own
  ``--gpus-per-node=1``, are accepted there, and a GPU more than the node has is not.

The CPU partition's jobs run on that node too: the training job is ``--exclusive``, so SLURM
allocates it both GPUs (``SLURM_GPUS_ON_NODE=2``) although it asks for none, and the script
must still train on the CPU (it follows ``--gpus-per-node``).

The time limit (whole minutes) is set with ``scontrol update`` once the run holds its step: the
first one whose signal (60 s before it) is due at least 5 s later. The signal then comes while
the run holds its step however slow the machine is, and soon (SLURM may send it up to a minute
early, says ``sbatch(1)``; here it came 1 to 10 s early), and the run has at least 60 s to stop.
A fixed limit cannot be both short and safe: with ``--time=3 --signal=B:TERM@30`` the run
reached its step 78 s after it started on a loaded machine, 222 s under a heavier load, and a
signal before that stops Ray or ls-train while they start. The requeued run gets 15 minutes, as
a user continuing a run would resubmit it with the time it needs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ls_train.testing import TINY_DATA, TINY_MODEL, TINY_TEST_PROPOSALS  # the tiny quickstart

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "scripts" / "slurm"
REQUIRE_SLURM_ENV = "LS_REQUIRE_SLURM"
JOB_TIMEOUT_S = 420  # a hang guard; the jobs take 20-60 s on 2 idle cores
FAKE_GPUS = 2  # count-only GPUs of the node (no CUDA): at most one per CPU, one Ray Train worker each
# the training job's time-limit signal, SIGNAL_BEFORE_END_S before the time limit that the test
# sets once the run holds its step (see the module's docstring)
SIGNAL_BEFORE_END_S = 60

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
START_TIMEOUT_S = 60
FINISHED_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED",
}


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here (the message says why)."""


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin", "/sbin") if (p := Path(d) / name).exists()), None
    )


_HANDED_OUT: set[int] = set()


def _free_port() -> int:
    """A free port in 20000-29999: below the ephemeral range (32768-60999 on Linux) where a port-0
    bind lands, so a local Ray that another test starts meanwhile (its GCS port picked free that
    way) cannot take the port before the job's Ray head binds it and then reach that head
    (InvalidAuthToken); above Ray's worker ports (10002-19999)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 30000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise SlurmUnavailable("no free port in 20000-29999")


def _mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("no MemTotal in /proc/meminfo")


class SingleNodeSlurm:
    """Start with :meth:`start`, submit with :meth:`sbatch`, stop with :meth:`stop`."""

    def __init__(self) -> None:
        missing = [name for name in DAEMONS + CLIENTS if _find(name) is None]
        if missing:
            raise SlurmUnavailable(
                f"{', '.join(missing)} not found "
                "(Debian: apt-get install slurmctld slurmd munge slurm-client)"
            )
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd must run as root to start job steps (this is not root)")
        self.binaries = {name: _find(name) for name in DAEMONS + CLIENTS}
        # munged wants every folder above its socket searchable by all, and Ray's socket paths must
        # stay short: a folder of its own right under /tmp, not pytest's 0700 tmp_path
        self.root = Path(tempfile.mkdtemp(prefix="ls-slurm-", dir="/tmp"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.cpus = len(os.sched_getaffinity(0))  # the CPUs this process may use, at most all
        self.memory_mib = _mem_total_mib() * 9 // 10
        self.gpus = min(FAKE_GPUS, self.cpus)
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._processes: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ daemons
    def _write_gres(self) -> None:
        """GPUs that SLURM counts, schedules and hands out (SLURM_GPUS_ON_NODE, SLURM_JOB_GPUS,
        CUDA_VISIBLE_DEVICES) on a machine without any: a gres.conf line of device files, each a
        link to /dev/null. slurmd 22.05 drops a GPU without ``File=`` ("Removing file-less GPU")
        and then drains the node ("gres/gpu count reported lower than configured (0 < 2)"), even
        with ``Flags=CountOnly``, and logs an error for a regular file ("not a valid character or
        block device"); with ``task/none`` nothing else opens them."""
        devices = self.root / "dev"
        devices.mkdir(mode=0o755)
        for index in range(self.gpus):
            (devices / f"gpu{index}").symlink_to("/dev/null")
        files = f"{devices}/gpu0" if self.gpus == 1 else f"{devices}/gpu[0-{self.gpus - 1}]"
        # slurmd reads gres.conf beside slurm.conf
        (self.root / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={files}\n")

    def _write_files(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(mode=0o755)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._write_gres()
        r = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=lstest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    # cred_expire: a requeued job waits this long (default 120 s) before it starts again
                    f"AuthInfo=socket={r}/munge/munge.socket,cred_expire=10",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "MailProg=/bin/true",
                    "ReturnToService=2",
                    "SchedulerType=sched/builtin",
                    "SchedulerParameters=sched_interval=2",  # a requeued job starts soon after its hold
                    "KillWait=30",
                    "MinJobAge=600",
                    "GresTypes=gpu",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mib} Gres=gpu:{self.gpus} State=UNKNOWN",
                    # the CPU partition (jobs ask for --gpus-per-node=0) and the GPU partition, on
                    # the one node
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _daemon(self, *argv: str) -> None:
        log = (self.root / "log" / f"{Path(argv[0]).name}.out").open("wb")
        self._processes.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        )

    def start(self) -> SingleNodeSlurm:
        """Start munged, slurmctld and slurmd; return once the node is idle. Raises
        :class:`SlurmUnavailable` (with the daemons' last log lines) when it never gets there."""
        self._write_files()
        r, b = self.root, self.binaries
        self._daemon(
            b["munged"], "--foreground", "--force", f"--key-file={r}/munge/munge.key",
            f"--socket={r}/munge/munge.socket", f"--pid-file={r}/munge/munged.pid",
            f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/munged.seed",
        )
        self._wait_for(lambda: (r / "munge" / "munge.socket").exists(), "munged to create its socket")
        self._daemon(b["slurmctld"], "-D", "-i", "-f", str(self.conf))
        self._daemon(b["slurmd"], "-D", "-f", str(self.conf), "-N", self.node)
        self._wait_for(lambda: self.node_state() == "idle", f"node {self.node} to become idle")
        return self

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            dead = [p.args[0] for p in self._processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                reason = f"{', '.join(dead)} exited" if dead else f"timed out after {START_TIMEOUT_S} s"
                self.stop()
                raise SlurmUnavailable(f"waiting for {what}: {reason}\n{self.logs(tail=15)}")
            time.sleep(0.2)

    def node_state(self) -> str:
        result = self.run("sinfo", "--noheader", "--format=%T", check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def logs(self, tail: int = 40) -> str:
        """The last ``tail`` lines of each daemon log."""
        parts = []
        for path in sorted((self.root / "log").glob("*")) if self.root.exists() else []:
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job (and wait up to 30 s for them to end, so that slurmd kills what they
        left running), stop the daemons (SIGTERM, then SIGKILL) and remove the folder."""
        if all(p.poll() is None for p in self._processes) and self._processes:
            self.run("scancel", "--full", "--signal=KILL", f"--user={os.getuid()}", check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queue = self.run("squeue", "--noheader", "--format=%i", check=False)
                if queue.returncode != 0 or not queue.stdout.strip():
                    break
                time.sleep(0.5)
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ clients
    def run(self, name: str, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binaries[name], *args], env=self.env, capture_output=True, text=True, check=check,
            timeout=60, **kwargs,
        )

    def sbatch(self, *args: str, env: dict[str, str], cwd: Path) -> int:
        """``sbatch --parsable ARGS`` with ``env`` (SLURM_CONF added); returns the job id."""
        result = subprocess.run(
            [self.binaries["sbatch"], "--parsable", *args],
            env={**env, "SLURM_CONF": str(self.conf)},
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {result.stderr.strip()}")
        return int(result.stdout.strip().split(";")[0])

    def sbatch_test_only(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``sbatch --test-only ARGS``: whether SLURM would accept the job, and where (nothing is
        submitted; the answer is on stderr)."""
        return subprocess.run(
            [self.binaries["sbatch"], "--test-only", *args],
            env=self.env, cwd=cwd, capture_output=True, text=True, check=False, timeout=60,
        )

    def started(self, job_id: int) -> float:
        """When the job's current run started (``StartTime``), in seconds since the epoch."""
        start = self.job(job_id).get("StartTime", "")
        return time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S"))

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, Restarts, RunTime, ...)."""
        out = self.run("scontrol", "show", "job", "--oneliner", str(job_id)).stdout
        fields = {}
        for item in out.split():
            key, _, value = item.partition("=")
            fields[key] = value
        return fields

    def state(self, job_id: int) -> str:
        return self.job(job_id).get("JobState", "")

    def wait(self, job_id: int, timeout: float, states: set[str] = FINISHED_STATES) -> dict[str, str]:
        """Poll until the job reaches one of ``states``; its fields (TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            fields = self.job(job_id)
            if fields.get("JobState") in states:
                return fields
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {fields.get('JobState')} after {timeout:g} s")
            time.sleep(0.5)


# ---------------------------------------------------------------------------- fixtures
def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_SLURM_ENV) == "1":
        pytest.fail(f"SLURM is required ({REQUIRE_SLURM_ENV}=1) but {reason}")
    pytest.skip(f"real-SLURM tests skipped: {reason}")


@pytest.fixture(scope="session")
def slurm() -> Iterator[SingleNodeSlurm]:
    """A single-node SLURM for the session (skipped, or failed under LS_REQUIRE_SLURM=1, where it
    cannot be started)."""
    try:
        cluster = SingleNodeSlurm().start()
    except SlurmUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


# ---------------------------------------------------------------------------- jobs
# 2 epochs of 2 steps, validated once (at the end), no final evaluation
TRAINING = (
    "trainer.epochs=2",
    "trainer.warmup_iters=2",
    "trainer.val_every_epochs=2",
    "evaluation.run_after_training=false",
)
STEPS = 4

HOLD_MODULE = '''
import time
from pathlib import Path


class HoldForStop:
    """Identity transform that, at the ``at_call``-th sample over all processes, touches ``reached``
    and waits until the run's stop file appears (at most 300 s), so that a signal sent then stops
    the run at a known step."""

    def __init__(self, *, counter: str, at_call: int, reached: str, stop_file: str) -> None:
        self.counter, self.at_call = Path(counter), at_call
        self.reached, self.stop_file = Path(reached), Path(stop_file)

    def __call__(self, image, target, meta):
        with self.counter.open("a") as f:
            f.write("x")
        if self.counter.stat().st_size == self.at_call:
            self.reached.touch()
            deadline = time.monotonic() + 300
            while not self.stop_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        return image, target, meta
'''

PROBE_MODULE = '''
import json
import os
from pathlib import Path

import ray


class RecordRay:
    """Identity transform that, at its first sample, writes what its Ray Train worker sees to
    ``folder/<pid>.json``: the Ray cluster's resources, and the SLURM and CUDA variables that the
    node's ``ray start`` job step passed on to its workers."""

    def __init__(self, *, folder: str) -> None:
        self.folder, self.written = Path(folder), False

    def __call__(self, image, target, meta):
        if not self.written:
            self.written = True
            env = {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "CUDA_"))}
            seen = {"cluster_resources": ray.cluster_resources(), "env": env}
            (self.folder / f"{os.getpid()}.json").write_text(json.dumps(seen))
        return image, target, meta
'''

# The GPU partition's training job keeps Ray Train's workers off CUDA (there is none here) with
# overrides after the script's, which merge into its {CPU:n,GPU:1}: gloo workers without a GPU.
KEEP_ON_CPU = ("cluster.use_gpu=false", "cluster.resources_per_worker={GPU:0}")


class Jobs:
    """Submits the sbatch scripts to ``slurm`` with the workspace's ls-train and ray on PATH, data and
    runs under ``root``, and a Ray of their own (ports and temp folder) for each job."""

    def __init__(self, slurm: SingleNodeSlurm, root: Path) -> None:
        self.slurm, self.root = slurm, root
        self.bin_dir = Path(sys.executable).parent
        commands = ("ls-train", "ls-evaluate", "ls-predict", "ray")
        missing = [name for name in commands if not (self.bin_dir / name).exists()]
        if missing:
            _unavailable(f"{', '.join(missing)} not found beside {sys.executable}")
        self.data = root / "data"
        self.runs = root / "runs"
        self.logs = root / "logs"
        self.logs.mkdir()

    def ray_temp_dir(self, name: str) -> Path:
        """The Ray temp folder of job ``name`` (short, for Ray's socket paths)."""
        return self.slurm.root / f"ray-{name}"

    def env(self, name: str, *, token: bool, **extra: str) -> dict[str, str]:
        """The submitting environment of job ``name`` (sbatch exports it to the job): a home folder
        of its own, with a Ray token file in it or not; a Ray of its own (temp folder, and free
        ports where Ray's are fixed, so that jobs side by side, and any other Ray on the machine,
        do not collide); none of the test process's Ray, SLURM or thread settings."""
        home = self.root / f"home-{name}"
        home.mkdir()
        if token:
            (home / ".ray").mkdir()
            (home / ".ray" / "auth_token").write_text(os.urandom(16).hex())
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RAY_", "SLURM_", "SBATCH_", "OMP_", "PYTEST_")) and k != "PYTHONPATH"
        }
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            HOME=str(home),
            REPO_DIR=str(REPO),
            RAY_PORT=str(_free_port()),
            RAY_START_ARGS=(
                f"--temp-dir={self.ray_temp_dir(name)} --include-dashboard=false --disable-usage-stats "
                f"--ray-client-server-port={_free_port()} --dashboard-agent-listen-port={_free_port()}"
            ),
            RAY_WAIT_POLL="1",
            RAY_DRAIN_TIMEOUT="2",
            RAY_STOP_TIMEOUT="30",
        )
        env.update(extra)
        return env

    def overrides(self, *extra: str) -> list[str]:
        return [
            "--config-name=quickstart",
            f"data.root={self.data}",
            *TINY_DATA,
            *TINY_MODEL,
            *TINY_TEST_PROPOSALS,
            f"trainer.runs_root={self.runs}",
            *extra,
        ]

    def submit(
        self, script: str, *args: str, env: dict[str, str], sbatch: tuple[str, ...] = (), gpus: int = 0
    ) -> int:
        """``sbatch`` on the CPU partition (--gpus-per-node=0, as the README says), or with ``gpus``
        on the GPU partition (--gpus-per-node, scaled down to the node's GPUs); one node, all CPUs."""
        gpu_request = ("--partition=gpu", f"--gpus-per-node={gpus}") if gpus else ("--gpus-per-node=0",)
        return self.slurm.sbatch(
            *gpu_request,
            "--nodes=1",
            f"--cpus-per-task={self.slurm.cpus}",  # the whole node, unless `sbatch` says otherwise
            "--time=15",
            f"--output={self.logs}/%x-%j.out",
            *sbatch,
            str(SLURM_DIR / script),
            *args,
            env=env,
            cwd=self.root,
        )

    def log(self, job_id: int, name: str) -> str:
        path = self.logs / f"{name}-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else f"(no job log {path})"

    def finish(self, job_id: int, name: str) -> tuple[dict[str, str], str]:
        """Wait for the job to end; its ``scontrol show job`` fields and its log."""
        try:
            fields = self.slurm.wait(job_id, JOB_TIMEOUT_S)
        except TimeoutError as exc:
            self.slurm.run("scancel", str(job_id), check=False)
            pytest.fail(f"{exc}\n{self.log(job_id, name)}\n{self.slurm.logs()}")
        return fields, self.log(job_id, name)


def _expect_completed(fields: dict[str, str], log: str) -> None:
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), f"{fields}\n{log}"


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    from ls_train.trainer.logging import read_csv_rows

    return read_csv_rows(path)


def _state(checkpoint: Path) -> tuple[int, int, int]:
    from ls_train.trainer import load_state

    state = load_state(checkpoint)
    return int(state["epoch"]), int(state["epoch_step"]), int(state["global_iter"])


def _ray_processes_of(temp_dir: Path) -> list[str]:
    """Command lines of the processes still running with ``temp_dir`` in them (Ray left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(temp_dir) in cmdline:
                    found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _wait_for_hold(jobs: Jobs, job: int, reached: Path) -> float:
    """Wait until the training job holds its step; when that happened, in seconds after the job
    started."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not reached.exists():
        state, log = jobs.slurm.state(job), jobs.log(job, "ls-train")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"{state}\n{log}"
        assert time.monotonic() < deadline, log
        time.sleep(0.5)
    return reached.stat().st_mtime - jobs.slurm.started(job)


def _run_out_of_time(jobs: Jobs, job: int) -> float:
    """Set the job's time limit to the first whole minute that leaves at least 5 s before its
    ``--signal=B:TERM@SIGNAL_BEFORE_END_S`` is due; when the signal is due, in seconds after the
    job started."""
    elapsed = time.time() - jobs.slurm.started(job)
    minutes = math.ceil((elapsed + SIGNAL_BEFORE_END_S + 5) / 60)
    jobs.slurm.run("scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}")
    return minutes * 60 - SIGNAL_BEFORE_END_S


def _extend_the_requeued_run(jobs: Jobs, job: int) -> None:
    """Once the job has requeued itself, give its next run 15 minutes (it is held ``cred_expire``
    = 10 s before it starts again)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while jobs.slurm.job(job).get("Restarts") != "1":
        state, log = jobs.slurm.state(job), jobs.log(job, "ls-train")
        assert state in ("RUNNING", "COMPLETING", "PENDING", "REQUEUED"), f"{state}\n{log}"
        assert time.monotonic() < deadline, log
        time.sleep(0.5)
    jobs.slurm.run("scontrol", "update", f"JobId={job}", "TimeLimit=15")


def _signal_time(log: str, job_start: float) -> float | None:
    """When the batch script got its SIGTERM, in seconds after ``job_start`` (None: it got none)."""
    for line in log.splitlines():
        if "received SIGTERM: forwarding it" in line:
            clock = line.split("[ls-slurm ", 1)[1].split("]", 1)[0]
            day = time.strftime("%Y-%m-%d", time.localtime(job_start))
            return time.mktime(time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")) - job_start
    return None


def _train(jobs: Jobs) -> dict[str, Any]:
    """The training job, with a Ray token file in its home folder, ``REQUEUE_ON_TERM=1`` and a
    time limit whose signal stops it: the first sample of its second epoch holds that step until
    the run is asked to stop. Its fields, log, run folder and id, and when (after its start) it
    reached the hold and got the signal."""
    plugin = jobs.root / "plugin"
    plugin.mkdir()
    (plugin / "ls_test_hold.py").write_text(textwrap.dedent(HOLD_MODULE))
    run = jobs.runs / "stopped"
    reached = jobs.root / "hold-reached"
    hold = (
        "transforms.transforms_list=[{name:normalize_intensity,mode:percentile},"
        "{_target_:ls_test_hold.HoldForStop,"
        f"counter:'{jobs.root / 'hold-calls'}',at_call:3,reached:'{reached}',stop_file:'{run / 'STOP'}'}}]"
    )
    env = jobs.env("train", token=True, PYTHONPATH=str(plugin), REQUEUE_ON_TERM="1")
    overrides = jobs.overrides(*TRAINING, "trainer.run_name=stopped", hold)
    walltime_signal = f"--signal=B:TERM@{SIGNAL_BEFORE_END_S}"
    job = jobs.submit("train.sbatch", *overrides, env=env, sbatch=(walltime_signal,))
    held_after = _wait_for_hold(jobs, job, reached)
    first_start = jobs.slurm.started(job)
    due_after = _run_out_of_time(jobs, job)
    _extend_the_requeued_run(jobs, job)  # after SLURM's time-limit signal stopped the first run
    fields, log = jobs.finish(job, "ls-train")
    signalled_after = _signal_time(log, first_start)
    timing = {"held after": held_after, "due after": due_after, "signalled after": signalled_after}
    return {"fields": fields, "log": log, "run": run, "job": job, "timing": timing}


def _evaluate_and_predict(jobs: Jobs, checkpoint: Path) -> dict[str, Any]:
    """An evaluation job (no token file) and a prediction job (a token file) on ``checkpoint``, run
    side by side with one CPU each: their fields, logs and outputs."""
    evaluation = jobs.root / "evaluation"
    labels = jobs.root / "labels.ome.zarr"
    one_cpu = ("--cpus-per-task=1",)
    submitted = {
        "ls-evaluate": jobs.submit(
            "evaluate.sbatch",
            *jobs.overrides(
                f"checkpoint={checkpoint}",
                f"evaluation.output_dir={evaluation}",
                # Ray tasks on the job's cluster even for one crop on one worker
                "evaluation.ray_min_crops=1",
                "evaluation.ray_num_tasks=2",
            ),
            env=jobs.env("evaluate", token=False),
            sbatch=one_cpu,
        ),
        "ls-predict": jobs.submit(
            "predict.sbatch",
            *jobs.overrides(
                f"checkpoint={checkpoint}",
                f"input={jobs.data / 'tiff' / 'synth_002_image.tif'}",
                f"output={labels}",
                "predict.tile_shape=[8,32,32]",
                "predict.overlap=[0,8,8]",
            ),
            env=jobs.env("predict", token=True),
            sbatch=one_cpu,
        ),
    }
    finished = {name: jobs.finish(job, name) for name, job in submitted.items()}
    return {"jobs": finished, "evaluation": evaluation, "labels": labels}


def _train_on_the_gpu_partition(jobs: Jobs) -> dict[str, Any]:
    """A training job submitted as the README says for a GPU partition: the script's own
    ``#SBATCH --gpus-per-node`` scaled down to the node's GPUs on the command line, on one node;
    with :data:`KEEP_ON_CPU` after the script's overrides, and a transform that records what its
    Ray Train workers see. Its fields, log, run folder and the workers' records."""
    plugin, seen = jobs.root / "plugin-gpu", jobs.root / "gpu-workers-saw"
    plugin.mkdir()
    seen.mkdir()
    (plugin / "ls_test_probe.py").write_text(textwrap.dedent(PROBE_MODULE))
    probe = (
        "transforms.transforms_list=[{name:normalize_intensity,mode:percentile},"
        f"{{_target_:ls_test_probe.RecordRay,folder:'{seen}'}}]"
    )
    one_epoch = ("trainer.epochs=1", "trainer.warmup_iters=1", "evaluation.run_after_training=false")
    overrides = jobs.overrides(*one_epoch, "trainer.run_name=gpu", probe, *KEEP_ON_CPU)
    env = jobs.env("train-gpu", token=True, PYTHONPATH=str(plugin))
    job = jobs.submit("train.sbatch", *overrides, env=env, gpus=jobs.slurm.gpus)
    fields, log = jobs.finish(job, "ls-train")
    workers = [json.loads(path.read_text()) for path in sorted(seen.glob("*.json"))]
    return {"fields": fields, "log": log, "run": jobs.runs / "gpu", "workers": workers}


def _gpu_requests_of_evaluate_and_predict(jobs: Jobs) -> dict[str, subprocess.CompletedProcess[str]]:
    """``sbatch --test-only`` of evaluate.sbatch and predict.sbatch on the GPU partition with their
    own ``#SBATCH --gpus-per-node=1`` (their 8 CPUs scaled down to one), and of one GPU more than
    the node has."""

    def would_accept(script: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return jobs.slurm.sbatch_test_only(
            "--partition=gpu", "--cpus-per-task=1", *extra, str(SLURM_DIR / script), cwd=jobs.root
        )

    return {
        "evaluate.sbatch": would_accept("evaluate.sbatch"),
        "predict.sbatch": would_accept("predict.sbatch"),
        "too many GPUs": would_accept("evaluate.sbatch", f"--gpus-per-node={jobs.slurm.gpus + 1}"),
    }


def _check_walltime_signal(timing: dict[str, float | None], log: str) -> None:
    """The time-limit signal came while the job held its step, when it was due (SLURM may send it
    up to a minute early)."""
    held, due, signalled = timing["held after"], timing["due after"], timing["signalled after"]
    print(f"\ntraining job: held its step {held:.0f} s after it started; the time-limit signal was due "
          f"{due:.0f} s after and came {signalled} s after")
    assert signalled is not None, f"the batch script never got SIGTERM\n{log}"
    assert held - 2 <= signalled <= due + 2, f"{timing}\n{log}"  # the log's clock: whole seconds


def _check_training(trained: dict[str, Any], jobs: Jobs) -> None:
    fields, log, run, job = trained["fields"], trained["log"], trained["run"], trained["job"]
    _check_walltime_signal(trained["timing"], log)
    _expect_completed(fields, log)
    # the token file turned token authentication on for `ray start` and for every client alike
    token = f"Ray token authentication on (token from {jobs.root}/home-train/.ray/auth_token"
    assert log.count(token) == 2, log
    assert "InvalidAuthToken" not in log and "Invalid generic resource" not in log
    # --exclusive: SLURM allocated every GPU of the node, but the job asked for none, so none used
    gpus = f"0 GPUs (--gpus-per-node=0 of SLURM_GPUS_ON_NODE={jobs.slurm.gpus} allocated), 1 workers"
    assert log.count(gpus) == 2, log
    # the head's address is one the other nodes could reach, not the loopback name of the host
    assert "head address 127." not in log and log.count("head address ") == 2, log
    # SIGTERM -> a checkpoint of the current step -> Ray stopped -> requeued -> resumed there
    assert fields["Restarts"] == "1", f"{fields}\n{log}"
    assert "received SIGTERM: forwarding it" in log
    assert "stop requested: checkpoint written at epoch 2, iteration 1" in log, log
    assert f"requeueing job {job}" in log
    assert "resuming stopped at epoch 2, iteration 1" in log, log
    assert "before ls-train started" not in log  # no SIGTERM mistaken for one during Ray's start
    assert log.count("ls-train exited with status 0") == 2
    # the stop checkpoint was registered with Ray Train (the rerun found it through Ray's snapshot)
    snapshot = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
    names = [r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]]
    assert "checkpoint_epoch0001_iter00000003_partial" in names, names
    # ... and the run ends where an unstopped one ends: 2 epochs of 2 steps, one row per epoch
    assert _state(sorted(run.glob("checkpoint_epoch*"))[-1]) == (2, 0, STEPS)
    assert [row["epoch"] for row in read_csv_rows(run / "metrics.csv")] == [1.0, 2.0]
    assert json.loads((run / "result.json").read_text())["status"] == 0
    assert not (run / "STOP").exists()
    # each run drained and stopped its Ray in time; nothing of it left running, no record left behind
    assert log.count("Ray stopped") == 2 and "killing it" not in log, log
    assert not _ray_processes_of(jobs.ray_temp_dir("train"))
    assert not (jobs.ray_temp_dir("train") / "ray_current_cluster").exists()


def _check_evaluation(evaluated_and_predicted: dict[str, Any], jobs: Jobs) -> None:
    fields, log = evaluated_and_predicted["jobs"]["ls-evaluate"]
    _expect_completed(fields, log)
    assert "Ray token authentication off" in log
    assert "0 GPUs (--gpus-per-node=0), 1 workers" in log, log  # not --exclusive: none allocated
    assert "evaluating 1 crops in 1 Ray tasks" in log, log  # on the job's Ray cluster
    metrics = json.loads((evaluated_and_predicted["evaluation"] / "metrics.json").read_text())
    assert "ap@50" in json.dumps(metrics)
    assert "Ray stopped" in log and "killing it" not in log, log
    assert not _ray_processes_of(jobs.ray_temp_dir("evaluate"))


def _check_prediction(evaluated_and_predicted: dict[str, Any], jobs: Jobs) -> None:
    fields, log = evaluated_and_predicted["jobs"]["ls-predict"]
    _expect_completed(fields, log)
    assert "Ray token authentication on" in log
    assert "0 GPUs (--gpus-per-node=0), 1 workers" in log, log
    assert (evaluated_and_predicted["labels"] / "labels" / "instances").is_dir(), log
    assert "Ray stopped" in log and "killing it" not in log, log
    assert not _ray_processes_of(jobs.ray_temp_dir("predict"))


def _check_gpu_requests(answers: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for name in ("evaluate.sbatch", "predict.sbatch"):
        assert answers[name].returncode == 0, f"{name}: {answers[name].stderr}"
        assert "in partition gpu" in answers[name].stderr, f"{name}: {answers[name].stderr}"
    too_many = answers["too many GPUs"]
    assert too_many.returncode != 0, too_many.stderr
    assert "Requested node configuration is not available" in too_many.stderr, too_many.stderr


def _check_gpu_training(trained: dict[str, Any], jobs: Jobs) -> None:
    fields, log, workers = trained["fields"], trained["log"], trained["workers"]
    cpus, gpus = jobs.slurm.cpus, jobs.slurm.gpus
    _expect_completed(fields, log)
    # SLURM accepted the GPU request on the GPU partition ...
    assert (fields["Partition"], fields["TresPerNode"]) == ("gpu", f"gres:gpu:{gpus}"), fields
    # ... the script started Ray with the GPUs SLURM allocated, one Ray Train worker per GPU ...
    layout = (
        f"per node {cpus} CPUs, {gpus} GPUs (--gpus-per-node={gpus} of SLURM_GPUS_ON_NODE={gpus} "
        f"allocated), {gpus} workers; {gpus} workers in all"
    )
    assert layout in log and f"--num-cpus={cpus} --num-gpus={gpus}" in log, log
    cluster = (
        f"cluster.num_workers={gpus} cluster.use_gpu=true cluster.resources_per_worker=null "
        f"cluster.resources_per_worker={{CPU:{cpus // gpus},GPU:1}}"
    )
    assert cluster in log, log
    # ... which ls-train accepted (with KEEP_ON_CPU after them: gloo workers)
    assert "Could not override" not in log and "Invalid generic resource" not in log, log
    assert f"Ray Train, {gpus} worker(s), CPU (gloo)" in log, log
    # each worker's Ray cluster offers the GPUs, from a `ray start` step that holds them
    assert len(workers) == gpus, workers
    for seen in workers:
        assert seen["cluster_resources"].get("GPU") == gpus, seen
        assert seen["env"].get("SLURM_STEP_GPUS") == ",".join(map(str, range(gpus))), seen
    assert json.loads((trained["run"] / "result.json").read_text())["status"] == 0
    assert "Ray stopped" in log and "killing it" not in log, log
    assert not _ray_processes_of(jobs.ray_temp_dir("train-gpu"))
    shown = [line[:200] for line in log.splitlines() if line.startswith("[ls-slurm") or "Ray Train," in line]
    print(f"\nGPU partition training job (RunTime {fields['RunTime']}):\n" + "\n".join(shown))
    names = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES")
    saw = {name: workers[0]["env"].get(name) for name in names}
    print(f"a Ray Train worker saw GPU={workers[0]['cluster_resources'].get('GPU')} in Ray and {saw}")


# ---------------------------------------------------------------------------- the test
@pytest.mark.slow(seconds=566)
def test_train_evaluate_predict_jobs_on_a_real_slurm(
    slurm: SingleNodeSlurm, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One test, not one per job: the evaluation and prediction jobs need the training job's
    checkpoint, and pytest-xdist must not start a second SLURM (a session fixture is one per
    worker) nor run the training twice on two workers."""
    jobs = Jobs(slurm, tmp_path_factory.mktemp("slurm-jobs"))
    _check_gpu_requests(_gpu_requests_of_evaluate_and_predict(jobs))
    trained = _train(jobs)
    _check_training(trained, jobs)
    checkpoint = sorted(trained["run"].glob("checkpoint_epoch*"))[-1]
    evaluated_and_predicted = _evaluate_and_predict(jobs, checkpoint)
    _check_evaluation(evaluated_and_predicted, jobs)
    _check_prediction(evaluated_and_predicted, jobs)
    _check_gpu_training(_train_on_the_gpu_partition(jobs), jobs)
