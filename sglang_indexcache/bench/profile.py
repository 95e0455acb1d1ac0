"""SGLang's own profiler (`/start_profile`, `/stop_profile`) around a piece of a benchmark, and
the trace summarised: kernels per family, the GPU timeline's span, busy time and idle gaps, and
the host's busiest operators. Shared by the one-turn (`turn.py`) and decode (`decode.py`)
benchmarks."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Callable, Optional

# kernel families by name (lower case substrings, first match wins); the table keeps every
# kernel's own name as well, so a family is a reading aid, not the data
FAMILIES = (
    ("indexer logits", ("mqa_logits",)),
    ("top-k", ("topk", "top_k")),
    ("sparse attention", ("flash_mla", "flashmla", "sparse", "_mla")),
    ("MoE", ("moe", "expert", "grouped")),
    ("GEMM", ("gemm", "nvjet", "cutlass", "cublas", "sm90_xmma")),
    ("norm / rope / act", ("norm", "rope", "rotary", "silu", "act_and_mul", "quant")),
    ("copy / fill", ("copy", "fill", "memcpy", "memset", "cat", "gather", "scatter", "index")),
)


def family(name: str) -> str:
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "other"


def kernel_table(trace: dict) -> dict:
    """Per-kernel totals of one chrome trace (torch profiler); span and gaps of the GPU timeline."""
    kernels = [e for e in trace.get("traceEvents", [])
               if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    if not kernels:
        return {"kernels": 0}
    kernels.sort(key=lambda e: e["ts"])
    per = {}
    for e in kernels:
        row = per.setdefault(e["name"], {"us": 0.0, "calls": 0, "family": family(e["name"])})
        row["us"] += e["dur"]
        row["calls"] += 1
    busy, end, gaps = 0.0, kernels[0]["ts"], 0.0
    for e in kernels:  # union of intervals (streams may overlap)
        s, t = e["ts"], e["ts"] + e["dur"]
        if s > end:
            gaps += s - end
        busy += max(0.0, t - max(s, end))
        end = max(end, t)
    fams = {}
    for row in per.values():
        f = fams.setdefault(row["family"], {"us": 0.0, "calls": 0})
        f["us"] += row["us"]
        f["calls"] += row["calls"]
    top = sorted(per.items(), key=lambda kv: -kv[1]["us"])
    return {"kernels": len(kernels), "span_us": end - kernels[0]["ts"], "busy_us": busy, "gap_us": gaps,
            "families": fams, "by_kernel": dict(top)}


def host_table(trace: dict, top: int = 15) -> dict:
    """The host's operators (torch profiler `cpu_op` events) by total time. Nested operators
    count in their parents too: a reading aid for where host time goes, not a partition."""
    per: dict = {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and e.get("cat") == "cpu_op":
            row = per.setdefault(e["name"], {"us": 0.0, "calls": 0})
            row["us"] += e.get("dur", 0)
            row["calls"] += 1
    return dict(sorted(per.items(), key=lambda kv: -kv[1]["us"])[:top])


def python_table(trace: dict, top: int = 40) -> dict:
    """The host's Python functions (torch profiler `python_function` events, recorded with
    `with_stack`) by self time: each event's duration less its direct children's on the same
    thread, summed per function. Self times partition the profiled Python time, so two servers'
    tables say which functions one of them spends more host time in."""
    threads: dict = {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and e.get("cat") == "python_function" and "dur" in e:
            threads.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    per: dict = {}
    for events in threads.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))  # a parent before a child starting with it
        stack: list = []  # [end, self time left, name]
        for e in events:
            while stack and e["ts"] >= stack[-1][0]:
                _close(stack.pop(), per)
            if stack:
                stack[-1][1] -= e["dur"]
            stack.append([e["ts"] + e["dur"], float(e["dur"]), e["name"]])
        while stack:
            _close(stack.pop(), per)
    return dict(sorted(per.items(), key=lambda kv: -kv[1]["self_us"])[:top])


def _close(frame: list, per: dict) -> None:
    row = per.setdefault(frame[2], {"self_us": 0.0, "calls": 0})
    row["self_us"] += frame[1]
    row["calls"] += 1


def launch_intervals(trace: dict, name: str = "cudaGraphLaunch") -> dict:
    """The period between successive launches of `name` (CUDA runtime calls on the host): under
    decode CUDA graphs one launch per step (a breakable prefill graph adds one per segment of an
    extend), so its median is a decode step's period as the host sees it: its own work or, when
    the GPU is the slower, the GPU's time."""
    ts = sorted(e["ts"] for e in trace.get("traceEvents", [])
                if e.get("ph") == "X" and e.get("cat") == "cuda_runtime" and e.get("name") == name)
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    if not gaps:
        return {"launches": len(ts)}
    gaps.sort()
    return {"launches": len(ts), "median_us": gaps[len(gaps) // 2], "min_us": gaps[0], "max_us": gaps[-1]}


def profile_forwards(srv, prof_dir: Path, prefix: str, *, cuda: bool, run: Callable[[], object],
                     num_steps: Optional[int] = None, timeout: float = 600, with_stack: bool = False) -> tuple:
    """Profile what `run()` makes the server do: (trace file name or None, kernel table with
    the host's busiest operators). With `num_steps` SGLang stops by itself after that many
    scheduler steps (the steps `run()` starts), else when `run()` returns. `with_stack`: the
    Python functions too (the table's `python`, by self time), at the cost of a slower host."""
    prof_dir.mkdir(parents=True, exist_ok=True)
    body = {"output_dir": str(prof_dir), "activities": ["CPU", "GPU"] if cuda else ["CPU"],
            "with_stack": with_stack, "record_shapes": False, "profile_prefix": prefix}
    if num_steps:
        body["num_steps"] = num_steps
    srv.post("/start_profile", body, timeout=120)
    run()
    if not num_steps:
        srv.post("/stop_profile", {}, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:  # the scheduler writes the trace after it stops: wait for a whole file
        traces = sorted(prof_dir.glob(f"{prefix}-*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
        try:
            trace = json.loads(gzip.open(traces[-1]).read()) if traces else None
        except (EOFError, OSError, ValueError):  # still being written
            trace = None
        if trace is not None:
            break
        if time.monotonic() > deadline:
            return None, {"kernels": 0}
        time.sleep(1)
    table = kernel_table(trace)
    table["host_ops"] = host_table(trace)
    table["graph_launches"] = launch_intervals(trace)
    if with_stack:
        table["python"] = python_table(trace)
    return traces[-1].name, table
