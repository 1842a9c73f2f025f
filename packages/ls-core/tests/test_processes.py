import os
import subprocess
import sys

from ls_core import pid_alive


def test_a_running_process_is_alive_and_a_finished_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_own_process_and_non_positive_pids_count_as_alive() -> None:
    assert pid_alive(os.getpid()) and pid_alive(0) and pid_alive(-1)
