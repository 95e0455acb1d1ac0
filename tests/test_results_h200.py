"""The committed H200 agentic results from session 40 on reproduce the figures the README and the
issue notes quote (earlier H200 sessions: `test_results.py`, `test_results_flash.py`,
`test_results_glm.py`; the H100 ones: `test_results_h100.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from test_results import c_over_d, fpm_rows, replay_rows, row_figures
from test_results_h100 import own_and_wrapped, servers

from sglang_indexcache.bench import agentic_report, fpm, pyspy, ttft_split

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_session40_c_d_at_16_on_the_128k_trace_reproduce_the_quoted_figures():
    """One H200, 2026-12-06 (session 40): flash-12 at concurrency 16 on the 128K trace, servers
    d c c d (`fl-stages.sh`; the call's end stopped the first (c) in its shutdown, after its
    results were written, and the queue ran that configuration again). Session 33's two TTFT
    medians under 0.99 (0.981, and 0.899 at >= 96K) are at or above it here."""
    s40 = RESULTS / "h200-2026-12-06-session40"
    order = ("d1", "c1", "c2", "d2")
    keys, entry, level = servers(s40, "fl", order, "16", "821ea80f", gpu="NVIDIA H200")
    assert keys == "dccd"
    # run in this order; c1's results were complete before the call's end stopped its server
    finished = [json.loads((s40 / f"fl-{n}" / "results.json").read_text())["finished_at"][11:19] for n in order]
    assert finished == ["04:51:21", "04:54:13", "04:57:35", "05:00:43"]
    assert (s40 / "logs" / "queue.txt").read_text().count("fl-c1 rc=124 in 173s") == 1
    assert {entry[n]["kv_pool_tokens"] for n in order} == {5100736}
    assert all("--mem-fraction-static 0.6 " in entry[n]["server_command"] for n in order)
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"], lv["kv_working_set_tokens"], lv["cache_hit_rate_pct"],
             lv["ttft_long_n"]) for lv in level.values()} == {(16, 401, 0, 2040320, 92.84, 112)}
    assert [row_figures(level[n]) for n in order] == [
        [0.906, 1.541, 1.043, 5.91, 16.52], [0.84, 1.455, 0.991, 5.43, 17.71], [0.805, 1.362, 0.962, 5.81, 16.75],
        [0.847, 1.529, 0.955, 5.47, 17.42]]

    # (c) over (d): every figure at or above 0.99; some pairings still span both sides of 1
    ratios = agentic_report.agentic_ratios(json.loads((s40 / "fl" / "results.json").read_text()))
    over, pairings = c_over_d(ratios, "16")
    assert over == [1.023, 1.04, 1.066, 1.09, 1.012, 1.015] and min(over) >= 0.99
    assert pairings == [[0.964, 1.084], [1.01, 1.072], [1.009, 1.125], [1.051, 1.132], [0.943, 1.087], [0.961, 1.072]]
    paired = ratios["paired_over_d"]["16"]["c"]
    assert (paired["turns"], paired["unpaired"], paired["long_turns"]) == (401, 0, 112)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total")] == [1.07, 1.048, 1.061]

    # each turn's TTFT by stage: the host time outside the scheduler does not sort by configuration
    split = {n: ttft_split.summary(replay_rows(s40 / f"fl-{n}")) for n in order}
    assert {split[n]["parts_turns"] for n in order} == {401}
    assert [[round(split[n][k], 3) for k in ("outside_median_s", "outside_long_median_s")] for n in order] == [
        [0.342, 0.573], [0.333, 0.559], [0.321, 0.589], [0.323, 0.531]]
    assert [[round(split[n][k], 3) for k in ("sched_ttft_median_s", "sched_ttft_long_median_s")] for n in order] == [
        [0.51, 0.399], [0.475, 0.478], [0.409, 0.351], [0.493, 0.487]]
    assert "rank correlation over the 4 replays, outside against TTFT at >= 96K: 0.40" in (s40 / "split.txt").read_text()

    # at equal work: the v2-paged top-k's prefill 4 to 6 % cheaper; decode not by configuration
    replay = {n: fpm_rows(s40 / f"fl-{n}") for n in order}
    assert {(g["prefill"]["prefill_tokens"], g["decode"]["decode_requests"], g["dropped"])
            for g in map(fpm.spans, replay.values())} == {(1979939, 79799, 0)}
    work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in order])]
    assert work == [(1.031, 1.04), (0.968, 0.967), (0.974, 1.037), (1.027, 0.951)]

    # (c)'s own code in its scheduler, outside the upstream calls it wraps, and its running time
    running = {}
    for n in order:
        own, _ = pyspy.frames(pyspy.read(s40 / f"fl-{n}" / f"{n[0]}-c16-pyspy.txt.gz"))
        running[n] = round(sum(own.values()) / pyspy.RATE_HZ, 1)
    assert running == {"d1": 57.8, "c1": 52.8, "c2": 56.1, "d2": 55.0}
    assert {n: own_and_wrapped(s40 / f"fl-{n}" / f"{n[0]}-c16-pyspy.txt.gz") for n in order} == {
        "d1": (0, 0), "c1": (0.3, 7.42), "c2": (0.34, 7.57), "d2": (0, 0)}
