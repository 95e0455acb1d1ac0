"""The test and benchmark harness's server handle (`sglang_indexcache.server.Server`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sglang_indexcache.server import Server, ServerError

# A launcher whose child ignores SIGTERM and outlives it, as a slow scheduler process can.
# The child writes its pid once it ignores SIGTERM.
CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(120)
"""
LAUNCHER = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
if len(sys.argv) > 3:  # a launcher that fails at startup, leaving its child behind
    time.sleep(0.2)
    sys.exit(int(sys.argv[3]))
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stop_returns_only_when_no_process_of_the_server_is_left(tmp_path):
    """A benchmark starts its servers one after another: a straggler of the previous one
    (here a child that ignores SIGTERM) must not run beside the next. stop() waits for the
    whole process group and kills what outlives the grace period."""
    srv = Server("unused", log=tmp_path / "server.log")
    pid_file = tmp_path / "child.pid"
    srv.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, CHILD, str(pid_file)], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the launcher did not start its child"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)
    t0 = time.monotonic()
    srv.stop_grace_s = 1.0
    srv.stop()  # SIGTERM; the child ignores it: killed once the grace period is over
    assert srv.proc.poll() is not None
    assert not _alive(child), "stop() returned with a process of the server's group still running"
    assert time.monotonic() - t0 < 30


def test_a_server_that_dies_at_startup_leaves_no_process_behind(tmp_path):
    """A launcher that exits during startup (the TP 2 test's reference server did, refused by
    SGLang) may leave children holding CPUs or GPU memory: start() stops the group first."""
    srv = Server("unused", log=tmp_path / "server.log", startup_timeout=60)
    srv.stop_grace_s = 1.0
    pid_file = tmp_path / "child.pid"
    srv.cmd = [sys.executable, "-c", LAUNCHER, CHILD, str(pid_file), "3"]
    with pytest.raises(ServerError, match="server exited with 3"):
        srv.start()
    assert not _alive(int(pid_file.read_text())), "start() failed with a process of the server's group still running"
