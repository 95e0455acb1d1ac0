#!/usr/bin/env python3
"""The device host's CPUs, for telling a slow server from a slow CPU (session 19: one config's
batch-1 decode ran at 340 to 490 tokens/s from one server to the next, every SGLang Python
function of a slow server 1.6 to 1.9 times slower, on a 16-vCPU KVM guest).

    python3 scripts/host_cpus.py speeds [--rounds 3]        # pure-Python loop pinned to each CPU
    python3 scripts/host_cpus.py watch PATTERN SECONDS      # the CPU each matching process last ran on

`speeds` prints one JSON line per round: {cpu: loops per second}. `watch` samples every 0.5 s the
processes whose command line contains PATTERN (e.g. `sglang::scheduler`) and prints one JSON line
per sample: {pid: [cpu, user+system CPU seconds so far]}. Standard library only: it runs on the
bare device host before anything is installed.
"""

from __future__ import annotations

import json
import os
import sys
import time

LOOPS = 2_000_000


def speeds(rounds: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    for _ in range(rounds):
        row = {}
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            time.sleep(0.01)  # let the scheduler move us
            t0 = time.perf_counter()
            x = 0
            for i in range(LOOPS):
                x += i & 7
            row[cpu] = round(LOOPS / (time.perf_counter() - t0))
        os.sched_setaffinity(0, set(cpus))
        print(json.dumps(row), flush=True)


def _matching(pattern: str) -> list:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd:
            out.append(int(pid))
    return out


def watch(pattern: str, seconds: float) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sample = {}
        for pid in _matching(pattern):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the command: field 3 is the state, so utime (14) and stime (15) are [11] and [12],
            # the last CPU (39) is [36]
            sample[pid] = [int(fields[36]), (int(fields[11]) + int(fields[12])) / tick]
        print(json.dumps({"t": round(time.time(), 1), **sample}), flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "speeds":
        speeds(int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--rounds" else 3)
    elif len(sys.argv) == 4 and sys.argv[1] == "watch":
        watch(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(__doc__)
