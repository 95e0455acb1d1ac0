"""The committed MTP agentic results reproduce the figures the README and the issue notes quote:
(c) against (d) under MTP (EAGLE over one NextN layer, dummy weights: no draft accepted) in a
balanced order on one H100, sessions 42 and 43 (session 31's single pair on an H200 is in
`test_results_flash.py`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from test_results import RATIO_FIGS, c_over_d, fpm_rows, row_figures
from test_results_h100 import RESULTS, decode_only, own_and_wrapped, servers, short_figures

from sglang_indexcache.bench import agentic_report, fpm, pyspy

S42 = RESULTS / "h100-2026-12-06-session42"
S43 = RESULTS / "h100-2026-12-06-session43"


def full_steps(rows: list, batch: int) -> list:
    """ms of each forward that decoded `batch` requests and prefilled none, sorted."""
    return sorted(ms for ms, _ in decode_only(rows, batch))


def trimmed_mean(ms: list) -> float:
    """The mean of the middle 80 % (a first server's or a stretch's slow steps left out)."""
    n = len(ms)
    return statistics.mean(ms[n // 10:n - n // 10])


def mtp_servers(prefix: str, order: tuple, concurrency: str, trace: str, folder: Path = S42) -> tuple:
    """`servers`, after checking each ran under MTP with no draft accepted and the target's pool
    that MTP leaves at fraction 0.3 (407,744 tokens; 574,336 without MTP)."""
    keys, entry, level = servers(folder, prefix, order, concurrency, trace)
    assert {(entry[n]["mtp"], entry[n]["kv_pool_tokens"]) for n in order} == {(True, 407744)}
    assert {lv["accept_length"] for lv in level.values()} == {1.0}
    assert all("--speculative-algorithm EAGLE" in entry[n]["server_command"] for n in order)
    return keys, entry, level


def test_session42_mtp_at_16_on_the_32k_trace_ttft_and_sessions_hold_tpot_does_not():
    """Concurrency 16, the 32K trace, d c d c d c: TTFT and sessions/min at or above 0.99, TPOT
    0.972 (0.990 turn for turn) with each configuration's own servers 11 % apart; the bs-16
    decode step 0.4 % slower for (c) on every server. The pool evicts: 407,744 < 489,962."""
    order = ("d1", "c1", "d2", "c2", "d3", "c3")
    keys, entry, level = mtp_servers("mtp32", order, "16", "a674dde8")
    assert keys == "dcdcdc"
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"], lv["kv_working_set_tokens"])
            for lv in level.values()} == {(16, 195, 0, 489962)}
    assert [level[n]["cache_hit_rate_pct"] for n in order] == [85.74, 84.69, 83.99, 84.02, 82.35, 82.38]
    assert [short_figures(level[n]) for n in order] == [
        [0.505, 0.838, 5.54, 36.42], [0.498, 0.644, 5.28, 43.39], [0.436, 0.653, 5.09, 43.22],
        [0.45, 0.602, 5.54, 41.5], [0.475, 0.671, 5.13, 43.89], [0.464, 0.771, 4.97, 43.57]]

    merged = json.loads((S42 / "mtp32" / "results.json").read_text())
    ratios = agentic_report.agentic_ratios(merged)
    figs4 = RATIO_FIGS[2:]  # no turn at >= 96K
    assert c_over_d(ratios, "16", figs4) == ([1.024, 1.043, 0.972, 1.004],
                                             [[0.876, 1.121], [0.847, 1.392], [0.919, 1.115], [0.946, 1.196]])
    paired = ratios["paired_over_d"]["16"]["c"]
    assert (paired["turns"], paired["unpaired"], paired["tpot_turns"]) == (195, 0, 195)
    assert [round(paired[k], 3) for k in ("median", "total", "tpot_median", "tpot_total")] == [
        1.001, 1.009, 0.99, 0.971]
    table = agentic_report.agentic_table({**merged, "ratios": ratios})
    assert "KV POOL 407,744 < 489,962 NEEDED" in table and "TPOT median 0.990 (195 turns), total 0.971" in table

    replay = {n: fpm_rows(S42 / f"mtp32-{n}") for n in order}
    steps = {n: full_steps(replay[n], 16) for n in order}
    assert [len(steps[n]) for n in order] == [1791, 1791, 1791, 1790, 1791, 1791]
    assert [round(trimmed_mean(steps[n]), 3) for n in order] == [4.275, 4.292, 4.28, 4.291, 4.273, 4.302]
    assert min(trimmed_mean(steps[n]) for n in order if n[0] == "c") > max(
        trimmed_mean(steps[n]) for n in order if n[0] == "d")
    assert [round(statistics.median(steps[n]), 3) for n in order] == [4.274, 4.286, 4.278, 4.267, 4.271, 4.294]
    work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in order])]
    assert work == [(1.092, 1.069), (0.972, 0.987), (0.984, 0.982), (0.979, 0.995), (0.992, 0.979), (0.989, 0.989)]
    assert [round(entry[n]["levels"]["16"]["server"]["decode_tokens_per_s_median"]) for n in order] == [
        3655, 3620, 3645, 3659, 3654, 3589]

    own = {n: own_and_wrapped(S42 / f"mtp32-{n}" / f"{n[0]}-c16-pyspy.txt.gz") for n in order}
    assert own == {"d1": (0, 0), "c1": (0.15, 3.82), "d2": (0, 0), "c2": (0.18, 3.18), "d3": (0, 0), "c3": (0.09, 3.03)}
    calls = pyspy.calls_out(pyspy.read(S42 / "mtp32-c1" / "c-c16-pyspy.txt.gz"))
    torn = "IndexCacheDSABackend._count_replay (sglang_indexcache/backend/gpu.py) -> " \
           "DeepseekSparseAttnBackend._apply_cuda_graph_metadata (dsa_backend.py)"
    assert calls[torn] == 9  # _count_replay makes no such call: py-spy read the stack mid-change
    draft = "_around_decoder_layer (sglang_indexcache/backend/hooks.py) -> DeepseekV2DecoderLayer.forward (deepseek_v2.py)"
    assert [round(pyspy.calls_out(pyspy.read(S42 / f"mtp32-{n}" / "c-c16-pyspy.txt.gz"))[draft] / pyspy.RATE_HZ, 2)
            for n in ("c1", "c2", "c3")] == [1.63, 1.39, 1.15]


def test_session43_mtp_at_16_on_the_32k_trace_with_c_first_and_pooled_with_session_42():
    """Session 43, another H100, c d c d ((c) first, the reverse of session 42's order) with the
    batched metrics (`backend/metrics.py`): the machine's first server is again the slowest, now
    a (c), so (c) over (d) falls to 0.938 on sessions/min and 0.892 on TTFT p90 while TPOT is
    1.024; pooled with session 42 (each configuration first once) TTFT median 0.972, p90 1.043,
    TPOT 1.050, sessions/min 1.074. The bs-16 step, 0.4 % slower for (c) on all six of session 42's
    servers, is faster for (c) here on both: this host's servers are 8 % apart on it."""
    order = ("c1", "d1", "c2", "d2")
    keys, entry, level = mtp_servers("mtp32", order, "16", "a674dde8", folder=S43)
    assert keys == "cdcd"
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"], lv["kv_working_set_tokens"])
            for lv in level.values()} == {(16, 195, 0, 489962)}
    assert [level[n]["cache_hit_rate_pct"] for n in order] == [84.0, 84.96, 84.41, 83.06]
    assert [short_figures(level[n]) for n in order] == [
        [0.503, 0.867, 6.18, 32.14], [0.506, 0.675, 5.72, 40.37], [0.489, 0.611, 5.07, 43.64],
        [0.464, 0.644, 5.8, 40.41]]

    figs4 = RATIO_FIGS[2:]  # no turn at >= 96K
    expected = {  # merge: (c) over (d) and pairings; turn for turn TTFT median, total, TPOT median, total
        "mtp32": ([0.978, 0.892, 1.024, 0.938], [[0.921, 1.036], [0.742, 1.104], [0.925, 1.144], [0.795, 1.081]],
                  [1.004, 0.928, 1.019, 0.972]),
        "mtp32-with-s42": ([0.972, 1.043, 1.05, 1.074],
                           [[0.867, 1.125], [0.742, 1.392], [0.823, 1.167], [0.732, 1.198]], [1.002, 0.985, 1.01, 1.024]),
    }
    merged = {name: json.loads((S43 / name / "results.json").read_text()) for name in expected}
    for name, (medians, pairings, paired_figs) in expected.items():
        ratios = agentic_report.agentic_ratios(merged[name])
        assert c_over_d(ratios, "16", figs4) == (medians, pairings), name
        paired = ratios["paired_over_d"]["16"]["c"]
        assert (paired["turns"], paired["unpaired"], paired["tpot_turns"]) == (195, 0, 195)
        assert [round(paired[k], 3) for k in ("median", "total", "tpot_median", "tpot_total")] == paired_figs, name
    assert [len(c["per_server"]) for c in merged["mtp32-with-s42"]["configs"].values()] == [5, 5]

    replay = {n: fpm_rows(S43 / f"mtp32-{n}") for n in order}
    steps = {n: full_steps(replay[n], 16) for n in order}
    assert [len(steps[n]) for n in order] == [1791, 1790, 1791, 1777]
    assert [round(trimmed_mean(steps[n]), 3) for n in order] == [4.505, 4.571, 4.273, 4.61]
    assert max(trimmed_mean(steps[n]) for n in order if n[0] == "c") < min(
        trimmed_mean(steps[n]) for n in order if n[0] == "d")
    # the counter the metrics thread flushed, read 2 s after the replay: 3 of the 12 layers ran
    # the indexer in each target-verify forward, one per decode forward the server timed
    decodes = {n: len(decode_only(replay[n], batch=None)) for n in ("c1", "c2")}
    for n in ("c1", "c2"):
        calls = level[n]["server"]["indexer_layer_calls"]
        assert calls["TARGET_VERIFY:run"] == 3 * decodes[n] and calls["TARGET_VERIFY:skipped"] == 9 * decodes[n], calls
    assert decodes == {"c1": 2987, "c2": 3184}
    own = {n: own_and_wrapped(S43 / f"mtp32-{n}" / f"{n[0]}-c16-pyspy.txt.gz") for n in order}
    assert own == {"c1": (0.06, 4.54), "d1": (0.01, 0), "c2": (0.03, 3.4), "d2": (0, 0)}


def test_session42_mtp_at_concurrency_1_every_figure_and_pairing_holds():
    """Concurrency 1, the 128K trace, d c d c: every figure and every pairing at or above 0.99
    under MTP, as session 41 without it."""
    order = ("d1", "c1", "d2", "c2")
    keys, _, level = mtp_servers("mtp-conc1", order, "1", "821ea80f")
    assert keys == "dcdc"
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"], lv["kv_working_set_tokens"], lv["cache_hit_rate_pct"])
            for lv in level.values()} == {(2, 46, 0, 129278, 92.33)}
    assert [row_figures(level[n]) for n in order] == [
        [0.12, 0.177, 0.144, 3.87, 2.9], [0.119, 0.172, 0.135, 3.91, 2.89], [0.123, 0.179, 0.14, 3.9, 2.88],
        [0.118, 0.171, 0.131, 3.89, 2.9]]

    ratios = agentic_report.agentic_ratios(json.loads((S42 / "mtp1" / "results.json").read_text()))
    over, pairings = c_over_d(ratios, "1")
    assert over == [1.068, 1.074, 1.027, 1.037, 0.997, 1.001]
    assert pairings == [[1.036, 1.1], [1.065, 1.083], [1.01, 1.044], [1.03, 1.044], [0.991, 1.003], [0.995, 1.006]]
    assert min(min(p) for p in pairings) >= 0.99
    paired = ratios["paired_over_d"]["1"]["c"]
    assert (paired["turns"], paired["unpaired"], paired["long_turns"], paired["tpot_turns"]) == (46, 0, 14, 46)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total", "tpot_median", "tpot_total")] == [
        1.022, 1.059, 1.03, 0.996, 0.996]

    replay = {n: fpm_rows(S42 / f"mtp-conc1-{n}", "c1") for n in order}
    steps = {n: full_steps(replay[n], 1) for n in order}
    assert [(len(ms), round(ms[len(ms) // 10], 2), round(statistics.median(ms), 2)) for ms in steps.values()] == [
        (9154, 3.72, 3.8), (9154, 3.73, 3.82), (9154, 3.73, 3.82), (9154, 3.72, 3.81)]
    work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in order])]
    assert work == [(1.021, 0.994), (0.979, 1.002), (1.021, 1.002), (0.978, 1.001)]
    own = {n: own_and_wrapped(S42 / f"mtp-conc1-{n}" / f"{n[0]}-c1-pyspy.txt.gz") for n in order}
    assert own == {"d1": (0, 0), "c1": (0.16, 2.78), "d2": (0, 0), "c2": (0.16, 3.2)}
    assert [round(own[n][0] / len(steps[n]) * 1e6) for n in ("c1", "c2")] == [17, 17]


def test_session11_profile_of_mtp_decode_steps_has_the_same_kernels_and_0_2_percent_more_busy_time():
    """Session 11's profile of 8 MTP decode steps at 16 x 32K (an H200, `bench run --mtp
    --profile-steps 8`), which session 42's README cites beside its 0.4 % slower bs-16 step: the
    same 4,215 kernels for (c) and (d), the same count of each, 0.2 % more busy GPU time for (c)
    (11 us a step), the largest differences in an RMSNorm, SGLang's two top-k kernels and three
    GEMMs."""
    s11 = json.loads((RESULTS / "h200x2-2026-12-01-session11" / "decode-mtp" / "results.json").read_text())
    prof = {k: s11["configs"][k]["decode"]["profile"]["kernels"] for k in "cd"}
    assert prof["c"]["kernels"] == prof["d"]["kernels"] == 4215
    assert {n: v["calls"] for n, v in prof["c"]["by_kernel"].items()} == {
        n: v["calls"] for n, v in prof["d"]["by_kernel"].items()}
    assert [round(prof[k]["busy_us"] / 1000, 2) for k in "cd"] == [43.4, 43.31]
    assert round(prof["c"]["busy_us"] / prof["d"]["busy_us"], 4) == 1.002
    diff = sorted(((v["us"] - prof["d"]["by_kernel"][n]["us"], n) for n, v in prof["c"]["by_kernel"].items()),
                  reverse=True)
    top = [(round(us, 1), next(k for k in ("FusedAddRMSNormKernel", "topk_main_kernel", "topk_transform_prefill_kernel",
                                            "nvjet_sm90") if k in n)) for us, n in diff[:6]]
    assert top == [(25.3, "FusedAddRMSNormKernel"), (20.8, "topk_main_kernel"), (17.5, "topk_transform_prefill_kernel"),
                   (14.1, "nvjet_sm90"), (14.0, "nvjet_sm90"), (9.6, "nvjet_sm90")]
    assert round(sum(us for us, _ in diff), 1) == 88.0  # us over the 8 steps: 11 us a step
