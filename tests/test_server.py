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


# A launcher that answers /health on the given port, with a child as above.
HEALTHY_LAUNCHER = """
import http.server, os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[3])), Health).serve_forever()
"""
# A benchmark-like process: one server in a with-block, then a long wait (its work).
BENCH = """
import sys, time
from pathlib import Path
from sglang_indexcache.server import Server
srv = Server("unused", log=Path(sys.argv[1]) / "server.log", startup_timeout=60)
srv.stop_grace_s = 1.0
srv.cmd = [sys.executable, "-c", sys.argv[2], sys.argv[3], sys.argv[4], str(srv.port)]
with srv:
    print("ready", srv.proc.pid, flush=True)
    time.sleep(120)
"""


def test_a_terminated_benchmark_stops_its_server(tmp_path):
    """`timeout 290 python -m sglang_indexcache.bench ...` sends SIGTERM to the benchmark
    only; its server runs in its own session. On 2026-12-01 such a server outlived its
    benchmark and held 86 GB of the H200 through the next runs. Now SIGTERM ends the
    benchmark through its `with` block: the server's whole group is stopped first."""
    pid_file = tmp_path / "child.pid"
    bench = subprocess.Popen([sys.executable, "-c", BENCH, str(tmp_path), HEALTHY_LAUNCHER, CHILD, str(pid_file)],
                             stdout=subprocess.PIPE, text=True)
    line = bench.stdout.readline()
    assert line.startswith("ready"), f"the benchmark did not start its server: {line!r}"
    launcher, child = int(line.split()[1]), int(pid_file.read_text())
    assert _alive(launcher) and _alive(child)
    bench.terminate()
    assert bench.wait(timeout=60) == 128 + 15
    assert not _alive(launcher), "the server's launcher outlived the terminated benchmark"
    assert not _alive(child), "a process of the server's group outlived the terminated benchmark"


# A launcher like SGLang's when its HTTP port is taken: uvicorn logs the bind error and the
# process hangs on instead of exiting. Otherwise it answers /health. Writes its pid per port.
BINDING_LAUNCHER = """
import http.server, os, sys, time
port = int(sys.argv[-1])
open(os.path.join(sys.argv[1], f"pid-{port}"), "w").write(str(os.getpid()))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
try:
    httpd = http.server.HTTPServer(("127.0.0.1", port), Health)
except OSError as e:
    print(f"ERROR:    [Errno {e.errno}] error while attempting to bind on address ('127.0.0.1', {port}): "
          "address already in use", flush=True)
    time.sleep(120)
    sys.exit(0)
httpd.serve_forever()
"""


def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path):
    """CI, 2026-12-04: another process took the test server's port between free_port() and
    the server's bind; uvicorn logged 'address already in use', SGLang hung, and the test
    failed 300 s later. start() now sees the bind error in the log, stops that launch and
    launches again on another port."""
    import socket

    srv = Server("unused", log=tmp_path / "server.log", startup_timeout=60)
    srv.stop_grace_s = 1.0
    srv.launch = [sys.executable, "-c", BINDING_LAUNCHER, str(tmp_path)]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        srv._use_port(taken)
        try:
            srv.start()
            assert srv.port != taken and srv.healthy(timeout=5)
            first = int((tmp_path / f"pid-{taken}").read_text())
            assert not _alive(first), "the launch that could not bind was left running"
            assert "address already in use" not in srv.log.read_text()
        finally:
            srv.stop()


def test_free_ports_lie_outside_the_kernels_ephemeral_range():
    """Ports from bind(0) and outgoing connections come from the ephemeral range; a port
    outside it can only be taken by an explicit bind."""
    from sglang_indexcache.server import _ephemeral_range, free_port

    lo, hi = _ephemeral_range()
    ports = {free_port() for _ in range(50)}
    assert all(not lo <= p <= hi for p in ports), sorted(ports)
    assert len(ports) > 40  # random, so two servers started together do not pick the same one


def test_sglangs_crash_diagnostics_are_off_unless_the_caller_turns_them_on(tmp_path, monkeypatch):
    """stop() makes SGLang's launcher see a scheduler die and sleep 5 s before dumping live
    schedulers (none are left): off for every device, while the caller's environment, or the
    server's own `env`, can turn them on (`test_bench.py::test_serve_decode_on_cpu` checks a
    real server's log)."""
    names = ("SGLANG_PYSPY_DUMP_BEFORE_CRASH", "SGLANG_CUDA_COREDUMP_BEFORE_CRASH")
    for var in names:
        monkeypatch.delenv(var, raising=False)
    for device in ("cpu", "cuda"):
        env = Server("m", log=tmp_path / "a.log", device=device).env
        assert [env[v] for v in names] == ["0", "0"]
    monkeypatch.setenv(names[0], "1")
    for device in ("cpu", "cuda"):
        assert Server("m", log=tmp_path / "b.log", device=device).env[names[0]] == "1"
    assert Server("m", log=tmp_path / "c.log", env={names[1]: "1"}).env[names[1]] == "1"
