"""`scripts/device_queue.sh`, the queue every GPU session's jobs run through, on this machine: a
session script sourcing it, stand-in jobs, and a stand-in `nvidia-smi` on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SESSION = """\
S=$STATE; . scripts/device_queue.sh "$1" "${2:-}"
job quick 5 bash -c 'echo ran quick; sleep 1'
job fails 5 bash -c 'echo failing; exit 3'
job big 600 bash -c 'echo never'
job after 1 bash -c 'echo never either'
finish
"""

FAKE_SMI = """#!/usr/bin/env bash
# prints a header and one row a second until killed, as `nvidia-smi --query-gpu=... -l N` does
echo "args: $*"
while true; do echo "2026/12/04 23:00:00.000, 0, 41, 1980, 3201, 120.5 W, 97 %"; sleep 1; done
"""


def run_session(tmp_path, seconds: int = 60):
    bin_dir, out, state, sg = tmp_path / "bin", tmp_path / "out", tmp_path / "s99", tmp_path / "sg"
    for d in (bin_dir, out, sg / "sglang"):
        d.mkdir(parents=True, exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    script = tmp_path / "jobs.sh"
    script.write_text(SESSION)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "STATE": str(state),
           "SG": str(sg), "GPU_EVERY_S": "1"}
    # the script is sourced from the checkout's root, as on the device (`bash benchmarks/jobs/X.sh N`)
    proc = subprocess.run(["bash", str(script), str(seconds)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    return proc, state, out


def test_the_queue_runs_in_order_holds_what_does_not_fit_and_logs_the_gpu(tmp_path):
    proc, state, out = run_session(tmp_path)
    assert proc.returncode == 0, proc.stderr
    queue = (state / "logs" / "queue.txt").read_text()
    assert "quick rc=0" in queue and "fails rc=3" in queue
    assert "big: " in queue and "next call" in queue and "after: behind big, next call" in queue
    assert (state / "logs" / "quick.txt").read_text() == "ran quick\n"
    assert sorted(p.name for p in (state / "done").iterdir()) == ["quick"]  # a failed job runs again
    # the GPU sampled through each job that ran, and the sampler stopped with it
    gpu = (state / "logs" / "quick-gpu.csv").read_text().splitlines()
    assert gpu[0].startswith("args: --query-gpu=timestamp,index,temperature.gpu,clocks.sm") and "-l 1" in gpu[0]
    assert len(gpu) >= 2 and gpu[1].endswith("97 %")
    assert not (state / "logs" / "big-gpu.csv").exists()
    assert subprocess.run(["pgrep", "-f", str(tmp_path / "bin" / "nvidia-smi")], capture_output=True).returncode == 1
    # what comes back: the state folder, logs included, as a split tar under OUT
    parts = sorted(out.glob("s99.tgz.part-*"))
    assert parts
    joined = tmp_path / "joined.tgz"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        assert "s99/logs/quick-gpu.csv" in tar.getnames()

    # the next call skips what is done and runs the rest that fits
    proc, state, _ = run_session(tmp_path)
    queue = (state / "logs" / "queue.txt").read_text()
    assert queue.count("quick start") == 1 and queue.count("fails start") == 2


def test_a_bare_machine_is_refused_before_any_job(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "jobs.sh"
    script.write_text(SESSION)
    env = {**os.environ, "OUT": str(tmp_path), "STATE": str(tmp_path / "s99"), "SG": str(tmp_path / "nothing")}
    proc = subprocess.run(["bash", str(script), "60"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "a fresh machine" in proc.stderr
    assert not (tmp_path / "s99" / "logs" / "queue.txt").exists()


def test_the_report_script_merges_the_runs_it_is_named_and_compares_like_replays(tmp_path):
    """`benchmarks/jobs/report.sh DIR NAME=RUN,...` on two of session 33's servers: the named merge
    with its report, and one `bench spans` table for the concurrency-16 group with each server's
    GPU time at equal work. The second is named as session 37's runs were (`fl32-*`): the
    tables take every `fl*-*` run."""
    import shutil

    s33 = ROOT / "benchmarks" / "results" / "h200-2026-12-05-session33"
    d = tmp_path / "s"
    for run, name in (("fl-c1", "fl-c1"), ("fl-d1", "fl32-d1")):
        shutil.copytree(s33 / run, d / name)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "jobs" / "report.sh"), str(d),
                           "fl=fl-c1,fl32-d1", "none=fl-x1,fl-c1", sys.executable],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "none: fewer than two of fl-x1 fl-c1 have results; not merged" in proc.stdout
    report = (d / "fl" / "report.txt").read_text()
    assert "c over d:" in report and (d / "fl" / "ag.png").stat().st_size > 0
    spans = (d / "spans.txt").read_text().splitlines()
    assert spans[0] == "== fl*-*/*-c16" and len(spans) == 4
    # the pair's equal-work ratios lie either side of 1, and differ from the eight-server group's
    ratios = [tuple(float(x) for x in line.split()[-4:-1:2]) for line in spans[2:]]
    assert all(0.9 < r < 1.1 for pair in ratios for r in pair) and ratios[0][0] < 1 < ratios[1][0]
    assert (d / "pyspy.txt").exists()
    split = (d / "split.txt").read_text()  # `bench split` on the same group
    assert split.startswith("== fl*-*/*-c16\n") and "c (1 replays)" in split and "over d:" in split


def test_an_agentic_job_carries_its_environment_and_flags_to_the_benchmark(tmp_path):
    """`ag NAME EST [ENV=V...] -- FLAGS`: the job runs `$G bench agentic --out $S/NAME FLAGS` with
    the unit indexer weights and the job's own environment; without `--`, no environment."""
    stand_in = tmp_path / "g.sh"
    stand_in.write_text('echo "weights=$SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS topk=${SGLANG_INDEXCACHE_TOPK:-unset} args=$*"\n')
    script = tmp_path / "jobs.sh"
    script.write_text('S=$STATE; . scripts/device_queue.sh "$1"\n'
                      'ag one 5 SGLANG_INDEXCACHE_TOPK=upstream -- --configs u --concurrency 16\n'
                      'ag two 5 -- --configs d "--trace" "/a b/trace.json"\n'
                      'ag_long three 5 SGLANG_INDEXCACHE_TOPK=v2 -- --configs c\n'
                      'finish\n')
    sg, out = tmp_path / "sg", tmp_path / "out"
    (sg / "sglang").mkdir(parents=True)
    out.mkdir()
    state = tmp_path / "s98"
    env = {**os.environ, "OUT": str(out), "STATE": str(state), "SG": str(sg), "G": f"bash {stand_in}",
           "PATH": "/usr/bin:/bin"}  # no nvidia-smi
    proc = subprocess.run(["bash", str(script), "60"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (state / "logs" / "one.txt").read_text() == (
        f"weights=unit topk=upstream args=bench agentic --out {state}/one --configs u --concurrency 16\n")
    assert (state / "logs" / "two.txt").read_text() == (
        f"weights=unit topk=unset args=bench agentic --out {state}/two --configs d --trace /a b/trace.json\n")
    assert (state / "logs" / "three.txt").read_text() == (  # ag_long: the same job, as a `long` one
        f"weights=unit topk=v2 args=bench agentic --out {state}/three --configs c\n")


LONG_SESSION = """\
S=$STATE; . scripts/device_queue.sh "$1" "${2:-}"
long slow 3 bash -c 'echo "session $(ps -o sid= -p $$)"; sleep 4; echo slept'
job after 1 bash -c 'echo after'
finish
"""


def test_a_long_job_runs_on_between_calls_in_its_own_session_and_holds_the_rest(tmp_path):
    """`long`: started with setsid (the device tool keeps such a process when a call returns),
    waited for until the call's end, then reported running and everything after it held; the
    next call waits for the same process (not a second one) and runs the rest."""
    script = tmp_path / "jobs.sh"
    script.write_text(LONG_SESSION)
    state, out, sg = tmp_path / "s97", tmp_path / "out", tmp_path / "sg"
    (sg / "sglang").mkdir(parents=True)
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "STATE": str(state), "SG": str(sg), "PATH": "/usr/bin:/bin"}

    def call(seconds):
        proc = subprocess.run(["bash", str(script), str(seconds)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return (state / "logs" / "queue.txt").read_text()

    queue = call(37)  # 2 s of the call for jobs: the long one is still sleeping at its end
    assert "slow start, long" in queue and "slow: running at" in queue and "after: behind slow, next call" in queue
    assert not (state / "done" / "slow").exists() and not (state / "logs" / "after.txt").exists()
    pid = int((state / "running" / "slow.pid").read_text())
    queue = call(50)
    assert queue.count("slow start") == 1 and "slow rc=0 in " in queue and "after rc=0" in queue
    log = (state / "logs" / "slow.txt").read_text().split()
    assert log[0] == "session" and int(log[1]) == pid and log[-1] == "slept"  # its own session: sid = its pid
    assert sorted(p.name for p in (state / "done").iterdir()) == ["after", "slow"]
    assert not list((state / "running").iterdir())


def run_fl_stages(tmp_path, mib: int, call: int = 600, script: str = "fl-stages.sh", **env_extra):
    """`benchmarks/jobs/fl-stages.sh` (or `script` there) with `bench agentic` replaced by `echo`,
    a GPU of `mib` MiB and a device call of `call` seconds."""
    bin_dir, out, sg = tmp_path / "bin", tmp_path / "out", tmp_path / "sg"
    for d in (bin_dir, out, sg / "sglang"):
        d.mkdir(parents=True, exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(f"#!/usr/bin/env bash\necho {mib}\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "S": str(tmp_path / "s"),
           "SG": str(sg), "G": "echo RUN", **env_extra}
    proc = subprocess.run(["bash", f"benchmarks/jobs/{script}", str(call)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    return proc, tmp_path / "s"


def started(s) -> list:
    """The runs the queue started, in order."""
    return [line.split()[0] for line in (s / "logs" / "queue.txt").read_text().splitlines() if " start " in line]


def test_fl_stages_names_runs_by_trace_and_order_and_keeps_the_128k_trace_off_an_h100(tmp_path):
    proc, s = run_fl_stages(tmp_path / "h100", 81559)
    assert proc.returncode == 4 and "need an H200's pool" in proc.stdout
    assert not list(s.glob("fl-*")) and "start" not in (s / "logs" / "queue.txt").read_text()

    proc, s = run_fl_stages(tmp_path / "h100-32k", 81559, TRACE="trace-32k.json", ORDER="d c d c d")
    assert proc.returncode == 0, proc.stderr
    assert started(s) == ["fl32-d1", "fl32-c1", "fl32-d2", "fl32-c2", "fl32-d3"]
    ran = (s / "logs" / "fl32-c2.txt").read_text()
    assert f"--out {s}/fl32-c2 " in ran and f"--trace {s}/fl/trace-32k.json " in ran and ran.endswith("--configs c\n")

    proc, s = run_fl_stages(tmp_path / "h200", 143771)  # the default: 128K trace, d c d c
    assert proc.returncode == 0 and started(s) == ["fl-d1", "fl-c1", "fl-d2", "fl-c2"]
    assert f"--trace {s}/fl/trace.json " in (s / "logs" / "fl-d1.txt").read_text()


def test_fl_stages_runs_the_128k_trace_on_an_h100_at_concurrency_1(tmp_path):
    proc, s = run_fl_stages(tmp_path, 81559, CONC="1", ORDER="d c d")
    assert proc.returncode == 0, proc.stderr
    assert started(s) == ["fl-conc1-d1", "fl-conc1-c1", "fl-conc1-d2"]
    ran = (s / "logs" / "fl-conc1-c1.txt").read_text()
    assert f"--trace {s}/fl/trace.json --concurrency 1 " in ran and f"--min-sessions 2 --model-path {s}/fl/model --configs c\n" in ran

    proc, s = run_fl_stages(tmp_path / "c8", 81559, CONC="8")  # 8 live 128K sessions: not on an H100
    assert proc.returncode == 4 and "need an H200's pool" in proc.stdout


def test_fl_stages_holds_a_128k_server_that_would_not_finish_in_the_call(tmp_path):
    """Session 40: with 173 s left in the call the queue started a second 128K server on an H200
    (estimate 170 s); it needed 187 s and the call's end stopped it in its shutdown. Now it waits
    for the next call, and a call with the measured time starts it."""
    state = tmp_path / "s"
    (state / "done").mkdir(parents=True)
    (state / "done" / "fl-d1").touch()  # the first server ran in an earlier call
    proc, s = run_fl_stages(tmp_path, 143771, call=173 + 35)
    queue = (s / "logs" / "queue.txt").read_text()
    assert proc.returncode == 0 and " start " not in queue
    assert re.search(r"^fl-c1: 1[67]\ds left < 190s, next call$", queue, re.M) and "fl-d2: behind fl-c1, next call" in queue

    proc, s = run_fl_stages(tmp_path, 143771, call=190 + 35 + 10)  # 10 s for a loaded machine's start
    assert proc.returncode == 0 and "fl-c1 start " in (s / "logs" / "queue.txt").read_text()


def test_mtp_balanced_runs_fl_stages_under_mtp_on_the_trace_the_gpu_holds(tmp_path):
    """`mtp-balanced.sh` is `fl-stages.sh` with MTP=1: each server gets `--mtp` and no
    `--model-path` (the benchmark writes the shape with a NextN layer), runs are named mtp-*, the
    128K trace at 16 stays off an H100, whose 32K question runs there, and the estimates are
    60 s longer than without MTP on the 128K trace at 16 (session 31), 25 s at 1 (session 42),
    and on the 32K trace at 16 those measured under MTP (sessions 42 and 43)."""
    proc, s = run_fl_stages(tmp_path / "h200", 143771, script="mtp-balanced.sh")
    assert proc.returncode == 0, proc.stderr
    assert started(s) == ["mtp-d1", "mtp-c1", "mtp-d2", "mtp-c2", "mtp-d3", "mtp-c3"]
    ran = (s / "logs" / "mtp-c2.txt").read_text()
    assert f"--out {s}/mtp-c2 " in ran and f"--trace {s}/fl/trace.json --concurrency 16 " in ran
    assert "--mtp" in ran.split() and "--model-path" not in ran and ran.endswith("--configs c\n")

    proc, s = run_fl_stages(tmp_path / "h100", 81559, script="mtp-balanced.sh")
    assert proc.returncode == 4 and "need an H200's pool" in proc.stdout and not started(s)
    proc, s = run_fl_stages(tmp_path / "h100-32k", 81559, script="mtp-balanced.sh", TRACE="trace-32k.json", ORDER="d c")
    assert proc.returncode == 0 and started(s) == ["mtp32-d1", "mtp32-c1"]
    proc, s = run_fl_stages(tmp_path / "h100-c1", 81559, script="mtp-balanced.sh", CONC="1", ORDER="d")
    assert started(s) == ["mtp-conc1-d1"] and "--min-sessions 2 --mtp --configs d" in (s / "logs" / "mtp-conc1-d1.txt").read_text()

    # without MTP, fl-stages.sh keeps the model it was given
    proc, s = run_fl_stages(tmp_path / "plain", 143771, ORDER="c")
    assert started(s) == ["fl-c1"] and f"--model-path {s}/fl/model --configs c" in (s / "logs" / "fl-c1.txt").read_text()

    # the second 128K MTP server needs 250 s: with 240 left it waits for the next call
    state = tmp_path / "held" / "s"
    (state / "done").mkdir(parents=True)
    (state / "done" / "mtp-d1").touch()
    proc, s = run_fl_stages(tmp_path / "held", 143771, call=240 + 35, script="mtp-balanced.sh")
    assert proc.returncode == 0 and not started(s)
    assert re.search(r"^mtp-c1: 2[34]\ds left < 250s, next call$", (s / "logs" / "queue.txt").read_text(), re.M)

    # on an H100, the second server of either question: 165 s at 16 on the 32K trace (sessions 42's
    # and 43's took 110 to 133 s), 175 s at 1 (131 to 132 s)
    for name, first, need, env in (("mtp32", "mtp32-d1", 165, {"TRACE": "trace-32k.json"}),
                                   ("mtp-conc1", "mtp-conc1-d1", 175, {"CONC": "1"})):
        for left, runs in ((need - 10, []), (need + 20, [f"{name}-c1"])):
            state = tmp_path / f"{name}-{left}" / "s"
            (state / "done").mkdir(parents=True)
            (state / "done" / first).touch()
            proc, s = run_fl_stages(tmp_path / f"{name}-{left}", 81559, call=left + 35, script="mtp-balanced.sh",
                                    ORDER="d c", **env)
            assert proc.returncode == 0 and started(s) == runs, (name, left, proc.stderr)
            if not runs:
                assert re.search(rf"^{name}-c1: \d+s left < {need}s, next call$", (s / "logs" / "queue.txt").read_text(), re.M)


def collected(module: str, *k: str) -> list:
    """The test ids pytest collects from `module` (with `-k EXPR` if given)."""
    got = subprocess.run([sys.executable, "-m", "pytest", module, "--collect-only", "-q", "-p", "no:cacheprovider", *k],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    return [line for line in got.stdout.splitlines() if line.startswith(f"{module}::")]


def test_gpu_tests_jobs_run_every_one_gpu_test_exactly_once(tmp_path):
    """`benchmarks/jobs/gpu-tests.sh` cuts tests/test_gpu.py and tests/test_gpu_serving.py into
    `-k` parts, one call each: together a module's parts select each of its tests once (pytest
    collects here; the GPU tests skip only when run), and no part is empty."""
    proc, s = run_fl_stages(tmp_path, 81559, call=6000, script="gpu-tests.sh")
    assert proc.returncode == 0, proc.stderr
    runs = started(s)
    assert runs == ["gpu-a1", "gpu-a2", "gpu-b", "gpu-c1", "gpu-c2", "gpu-serving-a", "gpu-serving-b", "gpu-serving-c"]
    chosen = {"tests/test_gpu.py": [], "tests/test_gpu_serving.py": []}
    for run in runs:
        ran = (s / "logs" / f"{run}.txt").read_text()
        m = re.fullmatch(r"RUN test -x (\S+) -k (.+)\n", ran)
        assert m and m[1] in chosen, ran
        names = collected(m[1], "-k", m[2])
        assert names, ran
        chosen[m[1]] += names
    for module, names in chosen.items():
        every = collected(module)
        assert len(every) >= 10 and sorted(names) == sorted(every), module
