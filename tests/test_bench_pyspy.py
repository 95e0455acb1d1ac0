"""`bench agentic --py-spy`: the scheduler's Python stacks sampled during a replay (bench/pyspy.py)."""

from __future__ import annotations

import subprocess
import sys
import time
import types

from sglang_indexcache.bench import pyspy
from sglang_indexcache.server import Server

HOT = """
import setproctitle, time
setproctitle.setproctitle("sglang::scheduler_TP0")
def hot_loop():
    while True:
        sum(range(2000))
print("ready", flush=True)
hot_loop()
"""


def test_the_scheduler_is_found_by_its_title_and_its_stacks_are_sampled(tmp_path):
    """A process titled as SGLang titles its scheduler, found among its group by
    `Server.processes()`, sampled by py-spy; the file is gzipped and summarized, and `bench
    pyspy` tables it: its running time is in the function that ran."""
    assert pyspy.executable() is not None  # in the lock: the venv's bin has it
    proc = subprocess.Popen([sys.executable, "-c", HOT], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        found = Server.processes(types.SimpleNamespace(proc=proc))
        assert [cmd for _, cmd in found] == ["sglang::scheduler_TP0"]
        pids = pyspy.scheduler_pids(found + [(1, "sglang::detokenizer")])
        assert pids == [proc.pid]
        spy = pyspy.Sampler(pids, tmp_path / "c-c16-pyspy.txt")
        time.sleep(2.0)
        got = spy.stop()
    finally:
        proc.kill()
        proc.wait()
    assert got["error"] is None and [f["path"] for f in got["files"]] == ["c-c16-pyspy.txt.gz"]
    summary = got["files"][0]
    assert summary["samples"] >= 50  # 100 Hz for about 2 s, attach time aside
    assert summary["self"][0][0] == "hot_loop (<string>)" and summary["self"][0][1] >= 0.9 * summary["samples"]
    table = pyspy.table([tmp_path / "c-c16-pyspy.txt.gz", tmp_path / "c-c16-pyspy.txt.gz"])
    assert "hot_loop (<string>)" in table and "running s: [0]" in table


def test_the_http_process_is_found_by_its_command_and_sampled_beside_the_scheduler(tmp_path):
    """The server's own process (`python -m sglang.launch_server`: HTTP, tokenizer manager) is
    told from its children by its command line and recorded into OUT-http beside OUT."""
    procs = [(10, "/v/bin/python -m sglang.launch_server --model-path m"), (11, "sglang::scheduler_TP0"),
             (12, "/v/bin/python -B -c from multiprocessing.resource_tracker import main"), (13, "sglang::detokenizer")]
    assert pyspy.http_pid(procs) == 10 and pyspy.scheduler_pids(procs) == [11]
    assert pyspy.http_pid(procs[1:]) is None
    a = subprocess.Popen([sys.executable, "-c", HOT], stdout=subprocess.PIPE, text=True, start_new_session=True)
    b = subprocess.Popen([sys.executable, "-c", HOT], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert a.stdout.readline().strip() == b.stdout.readline().strip() == "ready"
        spy = pyspy.Sampler([a.pid], tmp_path / "c-c16-pyspy.txt", http=b.pid)
        time.sleep(2.0)
        got = spy.stop()
    finally:
        for p in (a, b):
            p.kill()
            p.wait()
    assert got["error"] is None
    assert [f["path"] for f in got["files"]] == ["c-c16-pyspy.txt.gz", "c-c16-pyspy-http.txt.gz"]
    assert all(f["samples"] >= 50 for f in got["files"])


def test_no_scheduler_or_no_py_spy_is_said_not_raised(tmp_path, monkeypatch):
    assert pyspy.Sampler([], tmp_path / "x.txt").stop() == {
        "files": [], "error": "no sglang::scheduler process in the server's group"}
    monkeypatch.setattr(pyspy, "executable", lambda: None)
    assert pyspy.Sampler([12345], tmp_path / "x.txt").stop()["error"].startswith("py-spy not found")


def test_a_pid_py_spy_cannot_attach_to_is_reported(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    got = pyspy.Sampler([dead.pid], tmp_path / "x.txt").stop()
    assert got["files"] == [] and got["error"].startswith("py-spy exited")


def test_collapsed_stacks_count_self_and_inclusive_per_function(tmp_path):
    raw = tmp_path / "s.txt"
    raw.write_text("loop (a.py:1);step (a.py:5);launch (b.py:9) 30\n"
                   "loop (a.py:1);step (a.py:7) 10\n"
                   "loop (a.py:2);wait (c.py:3) 5\n")
    own, incl = pyspy.frames(pyspy.read(raw))
    assert own == {"launch (b.py)": 30, "step (a.py)": 10, "wait (c.py)": 5}
    assert incl["loop (a.py)"] == 45 and incl["step (a.py)"] == 40


def test_the_packages_frames_are_split_by_what_they_called(tmp_path):
    """`bench pyspy`'s last table: the package's innermost frame and the frame it called, so its
    own time (<self>, prometheus) stands apart from the upstream call it wraps."""
    ours = "IndexCacheDSABackend.init_forward_metadata_out_graph (sglang_indexcache/backend/gpu.py:{})"
    raw = tmp_path / "c-c1-pyspy.txt"
    raw.write_text(f"loop (scheduler.py:1);{ours.format(143)};DeepseekSparseAttnBackend.plan (dsa_backend.py:9) 40\n"
                   f"loop (scheduler.py:1);{ours.format(149)} 3\n"
                   f"loop (scheduler.py:1);{ours.format(149)};_count_replay (sglang_indexcache/backend/gpu.py:170);"
                   "Counter.inc (prometheus_client/metrics.py:5) 2\n"
                   "loop (scheduler.py:1);step (scheduler.py:7) 10\n")
    got = pyspy.calls_out(pyspy.read(raw))
    head = ours.format(0).replace(":0)", ")")
    assert got == {f"{head} -> DeepseekSparseAttnBackend.plan (dsa_backend.py)": 40, f"{head} -> <self>": 3,
                   "_count_replay (sglang_indexcache/backend/gpu.py) -> Counter.inc (prometheus_client/metrics.py)": 2}
    d = tmp_path / "d-c1-pyspy.txt"
    d.write_text("loop (scheduler.py:1);step (scheduler.py:7) 10\n")
    assert pyspy.calls_out(pyspy.read(d)) == {}
    table = pyspy.table([d, raw])
    assert "sglang_indexcache's innermost frame -> what it called: s per file" in table
    assert f"     0.00    0.03  {head} -> <self>" in table
    assert "innermost" not in pyspy.table([d])  # a server without the package: no such section
