"""Which Ray ls-train, ls-evaluate and ls-predict use: their own local instance unless an address is
given (issue 18: never a cluster recorded on the machine by somebody else's ``ray start``); a Ray
that cannot start or be joined is one message naming the address or the cause and what to do (exit
status 1), never a traceback; ``ray.init`` does not take the command's SIGTERM handler away."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ls_train.cli import evaluate_main, predict_main
from ls_train.config import ClusterConfig
from ls_train.ray_session import RayStartError, ray_init_kwargs, start_ray

START_TIMEOUT = "The current node timed out during startup. This could happen because some raylet failed"


def test_without_an_address_a_new_local_instance_is_started() -> None:
    # address=None would let Ray join a cluster recorded in /tmp/ray or named by RAY_ADDRESS
    kwargs = ray_init_kwargs(ClusterConfig(num_cpus=3))
    assert kwargs["address"] == "local" and kwargs["num_cpus"] == 3


def test_an_address_given_is_joined_as_it_is() -> None:
    for address in ("auto", "10.0.0.5:6379"):
        kwargs = ray_init_kwargs(ClusterConfig(address=address, num_cpus=3))
        assert kwargs["address"] == address and "num_cpus" not in kwargs


@pytest.fixture
def ray_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``ray.init`` that fails as a slow local start does (a bare Exception), or, joining an address,
    as an address where no Ray answers does (ConnectionError); ``ray.shutdown`` recorded."""
    import ray

    calls: list[str] = []
    monkeypatch.setenv("RAY_AUTH_MODE", "")  # prepare_ray_auth may set it: put back as it was afterwards
    monkeypatch.delenv("RAY_AUTH_MODE")

    def init(address: str | None = None, **kwargs) -> None:
        calls.append(f"init {address}")
        if address == "local":
            raise Exception(f"{START_TIMEOUT}\nmore lines of Ray's message")
        raise ConnectionError(f"Could not find any running Ray instance at {address}.")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    return calls


def test_a_local_ray_that_does_not_start_in_time_says_so_and_what_to_do(ray_calls: list[str]) -> None:
    with pytest.raises(RayStartError) as caught:
        start_ray(ClusterConfig(num_cpus=3))
    message = str(caught.value)
    assert message.startswith(f"Ray could not start ({START_TIMEOUT})")
    assert "as a local instance with cluster.num_cpus=3" in message and "re-run the same command" in message
    assert "\n" not in message and ray_calls == ["init local", "shutdown"]  # what Ray had started is stopped


def test_a_cluster_that_does_not_answer_is_named_with_its_address(
    ray_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(RayStartError) as caught:
        start_ray(ClusterConfig(address="10.0.0.5:6379"))
    message = str(caught.value)
    assert message.startswith(
        "Ray could not join the cluster at cluster.address=10.0.0.5:6379 (ConnectionError: Could not find "
        "any running Ray instance at 10.0.0.5:6379.)"
    )
    assert "ray status --address=10.0.0.5:6379" in message and "RAY_AUTH_MODE=disabled" in message
    assert "leave cluster.address unset" in message


def test_ray_init_keeps_the_callers_sigterm_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ray.init`` installs Ray's own SIGTERM handler (exit at once, status 15): the command's
    handler (stop on request) must stay."""
    import ray

    def init(**kwargs) -> None:
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what ray.init does

    def ours(signum, frame) -> None:
        pass

    monkeypatch.setattr(ray, "init", init)
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        start_ray(ClusterConfig())
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_error_line(err: str, prog: str, start: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: {start}"), err
    assert "Traceback" not in err


def test_ls_evaluate_whose_ray_cannot_start_exits_1_with_one_message(
    ray_calls: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = np.zeros((4, 16, 16), dtype=np.uint16)
    labels[1:3, 2:6, 2:6] = 1
    for name in ("pred", "gt"):
        tifffile.imwrite(tmp_path / f"{name}.tif", labels, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "evaluation"
    argv = [f"pred={tmp_path / 'pred.tif'}", f"gt={tmp_path / 'gt.tif'}", "evaluation.num_workers=2",
            f"evaluation.output_dir={out}", "cluster.num_cpus=2"]  # fmt: skip
    assert evaluate_main(argv) == 1
    _one_error_line(capsys.readouterr().err, "ls-evaluate", f"Ray could not start ({START_TIMEOUT})")
    assert ray_calls == ["init local", "shutdown"]


def test_ls_predict_whose_ray_cluster_does_not_answer_exits_1_with_one_message_and_leaves_nothing(
    ray_calls: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = np.full((8, 32, 32), 100, dtype=np.uint16)
    image[2:5, 4:10, 4:12] = 1000
    tifffile.imwrite(tmp_path / "image.tif", image)
    argv = [
        "--config-name=quickstart", f"data.root={tmp_path / 'data'}", f"input={tmp_path / 'image.tif'}",
        f"output={tmp_path / 'labels.ome.zarr'}", "predict.segmenter=threshold",
        "predict.threshold_segmenter.threshold=500", "predict.tile_shape=[8,16,16]",
        "predict.overlap=[2,4,4]", "predict.progress=false", "predict.executor=ray", "predict.num_workers=2",
        "cluster.address=10.0.0.5:6379",
    ]  # fmt: skip
    assert predict_main(argv) == 1
    joining = "Ray could not join the cluster at cluster.address=10.0.0.5:6379"
    _one_error_line(capsys.readouterr().err, "ls-predict", joining)
    assert ray_calls == ["init 10.0.0.5:6379", "shutdown"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tif"]  # no work folder to block a rerun


def test_a_sigterm_while_ray_starts_goes_to_the_callers_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's handler, installed by ``ray.init``, would end the command with status 15; the command's
    own handler decides instead (here: stop on request), after Ray's start is undone."""
    import os
    import sys
    import time

    import ray

    from ls_train.hydra_app import StopRequested

    calls = []

    def init(**kwargs) -> None:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # what ray.init installs
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    def ours(signum, frame) -> None:
        raise StopRequested

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with pytest.raises(StopRequested):
            start_ray(ClusterConfig())
        assert signal.getsignal(signal.SIGTERM) is ours and calls == ["shutdown"]
    finally:
        signal.signal(signal.SIGTERM, previous)
