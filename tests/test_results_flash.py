"""The committed 12-layer (`flash-12`) agentic results from session 27 on reproduce the figures the
README and the issue notes quote (sessions 11 to 18's are in `test_results.py`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from test_results import RATIO_FIGS, fpm_rows, replay_rows, row_figures, ttft_and_decode, turns_by_key

from sglang_indexcache.bench import agentic_report
from sglang_indexcache.bench.agentic_report import LONG_CONTEXT as LONG

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def summed_long(turns: dict, x: str, y: str) -> float:
    """y's summed TTFT over x's on the turns at >= 96K (x faster: above 1; 3 places)."""
    keys = [k for k, t in turns[x].items() if t["context"] >= LONG]
    return round(sum(turns[y][k]["ttft_s"] for k in keys) / sum(turns[x][k]["ttft_s"] for k in keys), 3)


def test_session27_the_flash_12_matrix_at_concurrency_4_and_16_reproduces_the_quoted_figures():
    """One H200, 2026-12-04 (session 27): (a), (c), (d), (e), (f) on flash-12 at concurrency 4 and 16,
    one server each in the order c, d, e, f, a, joined by `bench merge`."""
    from sglang_indexcache.bench.agentic_runs import merge_results

    s27 = RESULTS / "h200-2026-12-04-session27"
    r = json.loads((s27 / "fl" / "results.json").read_text())
    c = r["configs"]
    assert r["shape"] == "flash-12" and r["trace"]["sha256"].startswith("821ea80f")
    again = merge_results([str(s27 / f"fl-{k}" / "results.json") for k in "cdefa"])
    assert {k: again["configs"][k]["levels"] for k in "acdef"} == {k: c[k]["levels"] for k in "acdef"}
    assert [c[k]["server_command"].split("--index-cache-pattern ")[1].split()[0] for k in "cef"] == [
        "FSSSFSSSFSSS", "FSSSSSSSFSSS", "FSSFSSSFSSSS"]
    assert all("--cuda-graph-backend-prefill" not in c[k]["server_command"] for k in "acdef")  # SGLang's graphs
    for level, sessions, rounds in (("4", 4, 94), ("16", 16, 401)):
        assert {(c[k]["levels"][level]["sessions"], c[k]["levels"][level]["rounds"],
                 c[k]["levels"][level]["failed_rounds"]) for k in "acdef"} == {(sessions, rounds, 0)}
    rows = {(lv, k): row_figures(c[k]["levels"][lv]) for lv in ("4", "16") for k in "acdef"}
    assert rows == {
        ("4", "a"): [0.455, 0.726, 0.531, 3.14, 8.56], ("4", "c"): [0.339, 0.491, 0.378, 2.93, 10.47],
        ("4", "d"): [0.36, 0.529, 0.437, 3.04, 10.09], ("4", "e"): [0.328, 0.509, 0.411, 3.3, 9.74],
        ("4", "f"): [0.338, 0.548, 0.417, 3.33, 9.6],
        ("16", "a"): [1.129, 2.205, 1.403, 6.53, 13.16], ("16", "c"): [0.829, 1.392, 0.962, 5.48, 17.78],
        ("16", "d"): [0.836, 1.427, 0.871, 5.64, 17.2], ("16", "e"): [0.741, 1.211, 0.738, 5.77, 18.4],
        ("16", "f"): [0.752, 1.276, 0.692, 6.22, 17.03]}
    assert [round(c[k]["levels"]["16"]["server"]["decode_tokens_per_s_median"]) for k in "acdef"] == [
        4762, 5136, 5411, 5145, 4613]
    ratios = agentic_report.agentic_ratios(r)
    fig = lambda pair, lv, k: [round(ratios[pair][lv][k][f], 3) for f in RATIO_FIGS]  # noqa: E731
    assert fig("over_d", "4", "c") == [1.157, 1.197, 1.064, 1.078, 1.038, 1.038]
    assert min(ratios["over_d"]["4"]["c"].values()) >= 0.99  # the first target holds at 4, one server each
    assert fig("over_d", "16", "c") == [0.906, 1.047, 1.009, 1.025, 1.028, 1.034]
    assert fig("over_a", "16", "c") == [1.459, 1.649, 1.363, 1.584, 1.192, 1.35]
    assert fig("over_a", "4", "c") == [1.404, 1.888, 1.342, 1.478, 1.072, 1.223]
    assert [fig("over_a", "16", k)[0] for k in "def"] == [1.61, 1.902, 2.028]
    assert [fig("over_a", "16", k)[-1] for k in "def"] == [1.307, 1.398, 1.294]
    assert [fig("over_a", "4", k)[0] for k in "ef"] == [1.29, 1.273]
    paired = {lv: ratios["paired_over_d"][lv]["c"] for lv in ("4", "16")}
    assert [[round(paired[lv][k], 3) for k in ("median", "median_long", "total")] for lv in ("4", "16")] == [
        [1.049, 1.158, 1.066], [1.013, 0.797, 1.015]]
    assert [[round(ratios["paired_over_a"][lv]["c"][k], 3) for k in ("median", "median_long", "total")]
            for lv in ("4", "16")] == [[1.301, 1.496, 1.39], [1.394, 1.546, 1.455]]
    # (f) and (c) do the same work (3 Full of 12, the servers' own indexer counts), yet one server
    # each moves the >= 96K figures by up to 39 %: the band (c) over (d)'s 0.906 lies in
    calls = {k: c[k]["levels"]["16"]["server"]["indexer_layer_calls"] for k in "cf"}
    assert {k: (v["EXTEND:run"], v["DECODE:run"]) for k, v in calls.items()} == {"c": (612, 22086), "f": (651, 21144)}
    assert [fig("over_c", lv, "f")[0] for lv in ("4", "16")] == [0.907, 1.39]
    assert fig("over_c", "16", "f")[4] == 0.881
    assert round(ratios["paired_over_c"]["16"]["f"]["median_long"], 3) == 1.182
    turns = {lv: turns_by_key(c, "cdf", lv) for lv in ("4", "16")}
    assert [summed_long(turns[lv], "f", "c") for lv in ("4", "16")] == [0.879, 1.204]
    assert summed_long(turns["16"], "c", "d") == 0.904
    per_turn = sorted(turns["16"]["d"][k]["ttft_s"] / t["ttft_s"] for k, t in turns["16"]["c"].items() if t["context"] >= LONG)
    assert len(per_turn) == 112
    assert [round(per_turn[int(q * 111)], 2) for q in (0.1, 0.9)] == [0.23, 2.43]
    # where the time goes at 16: the turns' TTFT and decode (199 tokens at the median ITL), summed
    split = {k: ttft_and_decode(c[k]["levels"]["16"]) for k in "ac"}
    assert {k: (round(x, 1), round(y, 1), round(x / (x + y), 2)) for k, (x, y) in split.items()} == {
        "a": (483.0, 250.1, 0.66), "c": (332.0, 229.7, 0.59)}
    a_, c_ = split["a"], split["c"]
    assert (round(a_[0] / c_[0], 2), round(a_[1] / c_[1], 2), round(sum(a_) / sum(c_), 2)) == (1.45, 1.09, 1.31)
    # (e), 2 Full of 12, over (c): the >= 96K median and sessions/min at 4 and 16
    assert [[fig("over_c", lv, "e")[i] for i in (0, 5)] for lv in ("4", "16")] == [[0.919, 0.93], [1.304, 1.035]]
    assert [round(c[k]["startup_s"]) for k in "cdefa"] == [132, 66, 65, 71, 58]
    # the probe (124,562 tokens + 1 through the chat door): the server's forward, ms
    assert [round(c[k]["probe"]["forward_s"]["chat_s"] * 1e3) for k in "cdaef"] == [15, 17, 25, 25, 18]


def test_session28_c_against_d_with_two_servers_each_reproduces_the_quoted_figures():
    """One H200, 2026-12-04 (session 28): (c) and (d) on flash-12 at concurrency 1 and 16, two
    servers each in the order c, d, d, c, then (f) at 1, joined by `bench merge`."""
    from sglang_indexcache.bench.agentic_runs import merge_results

    s28 = RESULTS / "h200-2026-12-04-session28"
    r = json.loads((s28 / "fl" / "results.json").read_text())
    c = r["configs"]
    assert r["shape"] == "flash-12" and r["trace"]["sha256"].startswith("821ea80f")  # session 27's turns
    again = merge_results([str(s28 / f"fl-{k}" / "results.json") for k in ("c1", "d1", "d2", "c2", "f1")])
    assert {k: again["configs"][k]["levels"] for k in "cdf"} == {k: c[k]["levels"] for k in "cdf"}
    assert [c[k]["servers"] for k in "cd"] == [2, 2] and set(c["f"]["levels"]) == {"1"}
    for level, sessions, rounds in (("1", 2, 46), ("16", 16, 401)):
        keys = "cdf" if level == "1" else "cd"
        assert {(c[k]["levels"][level]["sessions"], c[k]["levels"][level]["rounds"],
                 c[k]["levels"][level]["failed_rounds"]) for k in keys} == {(sessions, rounds, 0)}
    rows = {(lv, k): row_figures(c[k]["levels"][lv]) for lv in ("1", "16") for k in "cdf" if lv in c[k]["levels"]}
    assert rows == {
        ("1", "c"): [0.148, 0.202, 0.178, 2.82, 3.66], ("1", "d"): [0.148, 0.205, 0.182, 2.67, 3.94],
        ("1", "f"): [0.144, 0.199, 0.165, 2.26, 4.16],
        ("16", "c"): [0.782, 1.402, 0.92, 6.13, 16.79], ("16", "d"): [0.743, 1.374, 0.613, 5.88, 17.4]}
    runs = lambda k, lv, f: [round(x[f], 2) for x in c[k]["levels"][lv]["runs"]]  # noqa: E731
    decode = lambda k, lv: [round(x["server"]["decode_tokens_per_s_median"]) for x in c[k]["levels"][lv]["runs"]]  # noqa: E731
    assert [decode(k, lv) for lv in ("1", "16") for k in "cd"] == [[309, 370], [474, 305], [4443, 4562], [4836, 4860]]
    assert [runs(k, "1", "itl_median_ms") for k in "cd"] == [[3.11, 2.53], [2.09, 3.14]]  # 1.5x, server to server
    assert [[round(x["duration_s"], 1) for x in c[k]["levels"]["16"]["runs"]] for k in "cd"] == [[56.7, 57.6], [55.4, 54.9]]
    ratios = agentic_report.agentic_ratios(r)
    fig = lambda pair, lv, k: [round(ratios[pair][lv][k][f], 3) for f in RATIO_FIGS]  # noqa: E731
    span = lambda lv: [[round(x, 3) for x in ratios["over_d_range"][lv]["c"][f]] for f in RATIO_FIGS]  # noqa: E731
    assert fig("over_d", "1", "c") == [1.024, 1.028, 0.995, 1.014, 0.949, 0.93]
    assert span("1") == [[0.879, 1.177], [0.898, 1.173], [0.882, 1.121], [0.894, 1.146], [0.687, 1.271], [0.748, 1.177]]
    assert fig("over_d", "16", "c") == [0.666, 0.812, 0.951, 0.98, 0.96, 0.965]
    assert span("16") == [[0.438, 0.923], [0.615, 1.031], [0.795, 1.121], [0.9, 1.062], [0.853, 1.071], [0.954, 0.976]]
    assert ratios["over_d_range"]["16"]["c"]["sessions_per_min"][1] < 0.99  # every pairing misses the target
    paired = lambda pair, lv, k: [round(ratios[pair][lv][k][x], 3) for x in ("median", "median_long", "total")]  # noqa: E731
    assert [paired("paired_over_d", lv, "c") for lv in ("1", "16")] == [[0.984, 0.984, 0.989], [0.973, 0.719, 0.961]]
    assert fig("over_c", "1", "f")[0] == 1.081 and paired("paired_over_c", "1", "f") == [1.044, 1.08, 1.043]
    # the >= 96K turns at 16 summed per server: (c)'s agree with session 27's, (d)'s spread
    def long_sum(path):
        (entry,) = json.loads(path.read_text())["configs"].values()
        return round(sum(t["ttft_s"] for t in entry["levels"]["16"]["turns"] if t["context"] >= LONG), 1)
    assert [long_sum(s28 / f"fl-{k}" / "results.json") for k in ("c1", "c2", "d1", "d2")] == [103.9, 107.7, 59.7, 93.1]
    s27 = RESULTS / "h200-2026-12-04-session27"
    assert [long_sum(s27 / f"fl-{k}" / "results.json") for k in "cdefa"] == [106.7, 96.5, 82.0, 88.7, 159.0]
    # the probe's server forward (chat door, 124,562 + 1 tokens), ms; start-up, s
    assert [round(s["probe"]["forward_s"]["chat_s"] * 1e3) for k in "cd" for s in c[k]["per_server"]] == [16, 17, 12, 14]
    assert round(c["f"]["probe"]["forward_s"]["chat_s"] * 1e3) == 17
    assert [round(s["startup_s"]) for k in "cd" for s in c[k]["per_server"]] + [round(c["f"]["startup_s"])] == [
        141, 68, 62, 69, 66]


def test_session30_c_d_and_c_with_sglangs_kernels_at_16_reproduce_the_quoted_figures():
    """One H200, 2026-12-04 (session 30): (c), (d) and (c0) = (c) with SGLang's own kernels on
    flash-12 at concurrency 16, in the order c, d, c0, d, c, each forward's GPU span recorded."""
    from sglang_indexcache.bench import fpm
    from sglang_indexcache.bench.agentic_runs import merge_results

    s30 = RESULTS / "h200-2026-12-04-session30"
    order = ("c1", "d1", "c0", "d2", "c2")
    per = {n: json.loads((s30 / f"fl-{n}" / "results.json").read_text()) for n in order}
    assert {r["shape"] for r in per.values()} == {"flash-12"}
    assert {r["trace"]["sha256"][:8] for r in per.values()} == {"821ea80f"}  # session 27's turns
    entry = {n: next(iter(r["configs"].values())) for n, r in per.items()}
    kernels = {n: {k: v for k, v in e["server_env"].items() if k.startswith("SGLANG_INDEXCACHE_") and "WEIGHTS" not in k}
               for n, e in entry.items()}
    assert kernels["c0"] == {"SGLANG_INDEXCACHE_TOPK": "upstream", "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": "0"}
    assert all(kernels[n] == {} for n in order if n != "c0")
    level = {n: e["levels"]["16"] for n, e in entry.items()}
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"]) for lv in level.values()} == {(16, 401, 0)}
    assert [row_figures(level[n]) for n in order] == [
        [0.632, 1.16, 0.719, 6.41, 17.65], [0.806, 1.381, 0.816, 5.3, 18.12], [0.734, 1.225, 0.797, 5.66, 18.52],
        [0.725, 1.262, 0.58, 6.18, 17.54], [0.771, 1.319, 0.806, 6.04, 17.37]]
    assert [round(level[n]["duration_s"], 1) for n in order] == [54.4, 53.0, 51.8, 54.7, 55.3]
    assert [round(entry[n]["startup_s"]) for n in order] == [100, 48, 49, 50, 64]

    # the merged tables, and their ratios
    r = json.loads((s30 / "fl" / "results.json").read_text())
    again = merge_results([str(s30 / f"fl-{n}" / "results.json") for n in ("c1", "d1", "d2", "c2")])
    assert {k: again["configs"][k]["levels"] for k in "cd"} == {k: r["configs"][k]["levels"] for k in "cd"}
    ratios = agentic_report.agentic_ratios(r)
    assert [round(ratios["over_d"]["16"]["c"][f], 3) for f in RATIO_FIGS] == [0.915, 0.947, 1.091, 1.066, 0.922, 0.982]
    assert [[round(x, 3) for x in ratios["over_d_range"]["16"]["c"][f]] for f in RATIO_FIGS] == [
        [0.719, 1.136], [0.845, 1.052], [0.941, 1.275], [0.957, 1.191], [0.827, 1.024], [0.958, 1.006]]
    paired = lambda rt: [round(rt["paired_over_d"]["16"]["c"][x], 3) for x in ("median", "median_long", "total")]  # noqa: E731
    assert paired(ratios) == [1.116, 0.953, 1.08]
    r0 = json.loads((s30 / "fl-c0-vs-d" / "results.json").read_text())
    ratios0 = agentic_report.agentic_ratios(r0)
    assert [round(ratios0["over_d"]["16"]["c"][f], 3) for f in RATIO_FIGS] == [0.876, 0.955, 1.043, 1.079, 1.014, 1.039]
    assert paired(ratios0) == [1.049, 0.894, 1.065]

    # `bench spans` on every server's per-forward file
    def spans(n):
        return fpm.spans(fpm_rows(s30 / f"fl-{n}"))
    g = {n: spans(n) for n in order}
    # the same work on every server: new tokens prefilled, tokens decoded (no forward mixed the two)
    assert {(x["prefill"]["prefill_tokens"], x["prefill"]["decode_requests"], x["decode"]["decode_requests"],
             x["dropped"]) for x in g.values()} == {(1979939, 0, 79799, 0)}
    assert [(round(g[n]["prefill"]["gpu_s"], 2), round(g[n]["decode"]["gpu_s"], 2)) for n in order] == [
        (31.82, 20.33), (30.68, 18.89), (30.67, 18.99), (30.64, 20.45), (29.21, 22.28)]
    assert [round(g[n]["decode"]["ms_per_token"], 3) for n in order] == [0.255, 0.237, 0.238, 0.256, 0.279]
    fb = [g[n]["decode"]["full_batch"] for n in order]
    assert {f["batch"] for f in fb} == {16}
    assert [[round(f[k], 2) for k in ("p10_ms", "median_ms", "p90_ms")] for f in fb] == [
        [2.36, 2.73, 3.31], [2.32, 2.66, 3.18], [2.28, 2.71, 3.34], [2.38, 2.89, 3.34], [2.56, 3.12, 3.36]]
    # session 32's reading: the mean decode-only forward, in server order (c1 d1 c0 d2 c2), and
    # the host gap at batch 16 (the loop's period beyond the span)
    assert [round(g[n]["decode"]["gpu_s"] / g[n]["decode"]["forwards"] * 1e3, 3) for n in order] == [
        2.833, 2.674, 2.769, 2.993, 3.034]
    assert [round(f["gap_median_ms"], 2) for f in fb] == [0.04, 0.06, 0.03, 0.13, 0.17]


def test_session31_c_d_c0_and_mtp_at_16_reproduce_the_quoted_figures():
    """One H200, 2026-12-04 (session 31): flash-12 at concurrency 16 in the order c, d, (c, d
    under MTP), c0, d. The second (d) server's replay finished but its results.json was lost
    (the call ended during the server's stop); its per-forward file is here."""
    import gzip

    from sglang_indexcache.bench import fpm

    s31 = RESULTS / "h200-2026-12-04-session31"
    order = ("c1", "d1", "mtp-c", "mtp-d", "c0")
    per = {n: json.loads((s31 / (n if n.startswith("mtp") else f"fl-{n}") / "results.json").read_text()) for n in order}
    assert {r["trace"]["sha256"][:8] for r in per.values()} == {"821ea80f"}  # session 27's turns
    assert [per[n]["mtp"] for n in order] == [False, False, True, True, False]
    entry = {n: next(iter(r["configs"].values())) for n, r in per.items()}
    assert all("--speculative-algorithm EAGLE" in entry[n]["server_command"] for n in ("mtp-c", "mtp-d"))
    level = {n: e["levels"]["16"] for n, e in entry.items()}
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"]) for lv in level.values()} == {(16, 401, 0)}
    assert [row_figures(level[n]) for n in order] == [
        [0.833, 1.44, 0.851, 6.72, 15.83], [0.726, 1.288, 0.76, 5.92, 17.35], [0.92, 1.594, 0.74, 9.5, 12.03],
        [0.662, 1.286, 0.509, 9.41, 13.31], [0.727, 1.262, 0.686, 6.33, 17.23]]
    assert [level[n]["accept_length"] for n in ("mtp-c", "mtp-d")] == [1.0, 1.0]  # dummy weights: no draft kept

    def ratios(folder):
        r = agentic_report.agentic_ratios(json.loads((s31 / folder / "results.json").read_text()))
        paired = [round(r["paired_over_d"]["16"]["c"][x], 3) for x in ("median", "median_long", "total")]
        return [round(r["over_d"]["16"]["c"][f], 3) for f in RATIO_FIGS], paired
    assert ratios("fl") == ([0.893, 1.037, 0.872, 0.895, 0.88, 0.912], [0.92, 0.959, 0.9])
    assert ratios("fl-c0-vs-d") == ([1.107, 1.121, 0.999, 1.021, 0.934, 0.993], [0.998, 1.059, 1.01])
    assert ratios("mtp") == ([0.688, 0.87, 0.72, 0.807, 0.99, 0.904], [0.79, 0.915, 0.751])

    # `bench spans`, the lost server's file included
    def spans(n):
        return fpm.spans(fpm_rows(s31 / f"fl-{n}"))
    g = {n: spans(n) for n in ("c1", "d1", "c0", "d2")}
    assert {(x["prefill"]["prefill_tokens"], x["decode"]["decode_requests"], x["dropped"]) for x in g.values()} == {
        (1979939, 79799, 0)}
    assert [(round(x["prefill"]["gpu_s"], 2), round(x["decode"]["gpu_s"], 2)) for x in g.values()] == [
        (28.94, 24.41), (30.39, 22.02), (30.52, 21.6), (30.43, 23.18)]
    fit = [(round(x["decode"]["full_batch"]["fixed_ms"], 2), round(x["decode"]["full_batch"]["ms_per_mtoken"], 2))
           for x in g.values()]
    assert fit == [(3.11, 0.32), (2.58, 0.47), (2.72, 0.43), (2.66, 0.5)]
    # the loop's period beyond the GPU span at batch 16 (`fpm.host_gaps`, added in session 32):
    # only c1, the session's first server, left the GPU waiting on the host for long
    gap = [round(x["decode"]["full_batch"]["gap_median_ms"], 2) for x in g.values()]
    assert gap == [0.57, 0.09, 0.19, 0.14]
    assert [round(x["decode"]["gpu_s"] / x["decode"]["forwards"] * 1e3, 3) for x in g.values()] == [
        3.397, 3.049, 3.094, 3.135]

    # session 32's reading: the median TTFT of each quarter of a replay's requests (bench_serving's
    # `ttfts`, in request order): (c)'s longer TTFT runs through each replay, not a warm-up
    def quarters(folder, stem):
        with gzip.open(s31 / folder / f"{stem}-c16.jsonl.gz", "rt") as fh:
            ttft = json.loads(fh.read())["ttfts"]
        k = len(ttft)
        return [round(statistics.median(ttft[i * k // 4:(i + 1) * k // 4]), 3) for i in range(4)]
    assert quarters("fl-c1", "c") == [0.9, 0.788, 0.775, 0.858]
    assert quarters("fl-d1", "d") == [0.726, 0.727, 0.527, 0.847]
    assert quarters("fl-c0", "c") == [0.752, 0.642, 0.661, 0.815]
    assert quarters("mtp-c", "c") == [0.957, 1.067, 0.749, 0.801]
    assert quarters("mtp-d", "d") == [0.783, 0.773, 0.519, 0.602]


def test_session33_c_d_u_balanced_at_16_reproduce_the_quoted_figures():
    """One H200, 2026-12-05 (session 33): flash-12 at concurrency 16 with (d) first and reported
    apart (w1), then c d u d c in a balanced order, then spares u, (a) at concurrency 1 and r1 =
    (c) with the paged route off. (u) = (c) with SGLang's top-k (`SGLANG_INDEXCACHE_TOPK=upstream`)."""
    from sglang_indexcache.bench import fpm
    from sglang_indexcache.bench.agentic_runs import merge_results

    s33 = RESULTS / "h200-2026-12-05-session33"
    order = ("w1", "c1", "d1", "u1", "d2", "c2", "u2", "r1")
    per = {n: json.loads((s33 / f"fl-{n}" / "results.json").read_text()) for n in order}
    assert {(r["shape"], r["trace"]["sha256"][:8]) for r in per.values()} == {("flash-12", "821ea80f")}
    entry = {n: next(iter(r["configs"].values())) for n, r in per.items()}
    kernels = {n: {k: v for k, v in e["server_env"].items() if k.startswith("SGLANG_INDEXCACHE_") and "WEIGHTS" not in k}
               for n, e in entry.items()}
    assert kernels == {**{n: {} for n in ("w1", "c1", "d1", "d2", "c2")},
                       "u1": {"SGLANG_INDEXCACHE_TOPK": "upstream"}, "u2": {"SGLANG_INDEXCACHE_TOPK": "upstream"},
                       "r1": {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": "0"}}
    assert [next(iter(r["configs"])) for r in per.values()] == ["d", "c", "d", "u", "d", "c", "u", "c"]
    level = {n: e["levels"]["16"] for n, e in entry.items()}
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"]) for lv in level.values()} == {(16, 401, 0)}
    assert [row_figures(level[n]) for n in order] == [
        [0.784, 1.303, 0.816, 5.56, 18.22], [0.709, 1.201, 0.723, 5.4, 18.95], [0.742, 1.344, 0.653, 4.93, 19.04],
        [0.689, 1.274, 0.713, 5.79, 18.7], [0.69, 1.209, 0.546, 5.94, 17.91], [0.75, 1.24, 0.61, 4.74, 19.96],
        [0.672, 1.221, 0.465, 5.3, 18.71], [0.75, 1.281, 0.733, 5.36, 19.04]]
    assert [round(level[n]["duration_s"], 1) for n in order] == [52.7, 50.7, 50.4, 51.3, 53.6, 48.1, 51.3, 50.4]
    assert [round(entry[n]["startup_s"]) for n in order] == [77, 63, 47, 45, 57, 42, 42, 53]

    # the merged table (w1 and r1 left out), and its ratios: (c) and (u) over (d)
    r = json.loads((s33 / "fl" / "results.json").read_text())
    again = merge_results([str(s33 / f"fl-{n}" / "results.json") for n in ("c1", "d1", "u1", "d2", "c2", "u2")])
    assert {k: again["configs"][k]["levels"] for k in "cdu"} == {k: r["configs"][k]["levels"] for k in "cdu"}
    ratios = agentic_report.agentic_ratios(r)
    over = lambda k: [round(ratios["over_d"]["16"][k][f], 3) for f in RATIO_FIGS]  # noqa: E731
    span = lambda k: [[round(x, 3) for x in ratios["over_d_range"]["16"][k][f]] for f in RATIO_FIGS]  # noqa: E731
    paired = lambda k: [round(ratios["paired_over_d"]["16"][k][x], 3) for x in ("median", "median_long", "total")]  # noqa: E731
    assert over("c") == [0.899, 1.036, 0.981, 1.046, 1.071, 1.053]
    assert span("c") == [[0.755, 1.07], [0.913, 1.182], [0.92, 1.046], [0.975, 1.119], [0.912, 1.253], [0.995, 1.115]]
    assert paired("c") == [1.02, 0.925, 1.007]
    assert over("u") == [1.017, 1.058, 1.052, 1.023, 0.98, 1.013]
    assert paired("u") == [1.066, 1.035, 1.044]

    # every forward's GPU span: the same work on every server, cut differently by the scheduler
    replay = {n: fpm_rows(s33 / f"fl-{n}") for n in order}
    g = {n: fpm.spans(replay[n]) for n in order}
    assert {(x["prefill"]["prefill_tokens"], x["decode"]["decode_requests"], x["dropped"]) for x in g.values()} == {
        (1979939, 79799, 0)}
    assert [(round(g[n]["prefill"]["gpu_s"], 2), round(g[n]["decode"]["gpu_s"], 2)) for n in order] == [
        (30.9, 19.33), (29.32, 19.14), (30.82, 17.12), (30.81, 18.96), (30.92, 20.19), (29.19, 16.24),
        (32.27, 17.46), (29.31, 18.83)]
    assert [(g[n]["prefill"]["forwards"], g[n]["decode"]["forwards"]) for n in order] == [
        (211, 7038), (211, 7151), (189, 6444), (216, 6890), (219, 7087), (187, 6321), (207, 6437), (209, 6780)]
    assert [round(g[n]["decode"]["full_batch"]["gap_median_ms"], 2) for n in order] == [
        0.05, 0.03, 0.03, 0.03, 0.07, 0.03, 0.04, 0.04]
    # at equal work (`fpm.work_ratios` over the eight): the v2-paged top-k's servers (c1, c2, r1)
    # prefill in 4 % less GPU time than every server with SGLang's top-k; decode does not sort
    # by configuration
    work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in order])]
    assert work == [(1.011, 1.024), (0.959, 1.012), (1.017, 0.965), (1.01, 1.016), (1.017, 1.048), (0.962, 0.949),
                    (1.064, 0.994), (0.961, 1.006)]

    # sessions 30 and 31 read the same way, each session's servers as one group
    def earlier(session, names):
        folder = RESULTS / f"h200-2026-12-04-session{session}"
        work = fpm.work_ratios([fpm_rows(folder / f"fl-{n}") for n in names])
        return [(round(x["prefill"], 3), round(x["decode"], 3)) for x in work]
    assert earlier(30, ("c1", "d1", "c0", "d2", "c2")) == [
        (1.035, 0.988), (1.008, 0.95), (1.0, 0.977), (1.005, 1.024), (0.952, 1.064)]
    assert earlier(31, ("c1", "d1", "c0", "d2")) == [(0.961, 1.077), (1.011, 0.952), (1.015, 0.983), (1.013, 0.986)]

    # the spare at concurrency 1: (a) dsa all Full, two sessions
    a = next(iter(json.loads((s33 / "fl-a-1" / "results.json").read_text())["configs"].values()))["levels"]["1"]
    assert (a["sessions"], a["rounds"], a["failed_rounds"]) == (2, 46, 0)
    assert row_figures(a) == [0.166, 0.261, 0.199, 2.27, 4.07]


def test_sessions_28_to_33_ttft_split_reproduces_the_quoted_figures():
    """`bench split` on the committed replays at concurrency 16 (session 34, no GPU): each turn's
    TTFT split into the scheduler's part (queue and prefill, from the server's ReqTimeStats lines
    and the client's first-to-last-token time) and the host time outside the scheduler. The
    outside time ranks the servers' >= 96K TTFT medians in every session."""
    from sglang_indexcache.bench import ttft_split

    def split(session, names):
        folder = next(RESULTS.glob(f"h200-*-session{session}"))
        out = {}
        for n in names:
            rows = replay_rows(folder / f"fl-{n}")
            assert sum(r["outside_s"] is not None for r in rows) == 401  # every turn paired with its log line
            long_ = [r["ttft_s"] for r in rows if r["context"] >= LONG]
            out[n] = {**ttft_split.summary(rows), "ttft_long": statistics.median(long_),
                      "ttft": statistics.median(r["ttft_s"] for r in rows)}
        return out

    def figs(s, names, *keys):
        return [[round(s[n][k], 3) for k in keys] for n in names]

    def rank(s, names):
        return round(ttft_split.spearman([s[n]["outside_long_median_s"] for n in names],
                                         [s[n]["ttft_long"] for n in names]), 2)

    def over_d(s, c, d, key):  # medians over each side's servers, (d)'s over (c)'s
        return round(statistics.median(s[n][key] for n in d) / statistics.median(s[n][key] for n in c), 3)

    s33 = split(33, ("w1", "c1", "d1", "u1", "d2", "c2", "u2", "r1"))
    six = ("c1", "d1", "u1", "d2", "c2", "u2")
    assert figs(s33, six, "outside_median_s", "outside_long_median_s", "sched_ttft_median_s", "sched_ttft_long_median_s") == [
        [0.236, 0.438, 0.394, 0.284], [0.26, 0.374, 0.483, 0.296], [0.219, 0.391, 0.405, 0.297],
        [0.249, 0.288, 0.394, 0.244], [0.259, 0.325, 0.436, 0.27], [0.193, 0.251, 0.382, 0.252]]
    assert figs(s33, ("w1", "r1"), "outside_median_s", "outside_long_median_s") == [[0.284, 0.419], [0.26, 0.419]]
    assert rank(s33, six) == 1.0 and rank(s33, tuple(s33)) == 0.9
    c, d, u = ("c1", "c2"), ("d1", "d2"), ("u1", "u2")
    assert [over_d(s33, c, d, k) for k in ("ttft", "ttft_long", "sched_ttft_median_s", "sched_ttft_long_median_s")] == [
        0.981, 0.899, 1.058, 0.973]
    assert [over_d(s33, u, d, k) for k in ("sched_ttft_median_s", "sched_ttft_long_median_s")] == [1.113, 0.983]

    # sessions 28, 30 and 31: (c) and (d) as their notes compared them
    # (c)'s servers had more host time outside the scheduler at >= 96K than (d)'s in all four
    for session, c, d, ttft_long, sched_long, sched, rk, outside in (
            (28, ("c1", "c2"), ("d1", "d2"), 0.666, 0.78, 1.045, 1.0, [0.594, 0.629, 0.256, 0.457]),
            (30, ("c1", "c2"), ("d1", "d2"), 0.915, 1.006, 1.235, 0.8, [0.414, 0.564, 0.488, 0.339]),
            (31, ("c1",), ("d1", "d2"), 0.927, 1.107, 1.147, 1.0, [0.593, 0.478, 0.53])):
        s = split(session, c + d)
        assert [over_d(s, c, d, "ttft_long"), over_d(s, c, d, "sched_ttft_long_median_s"),
                over_d(s, c, d, "sched_ttft_median_s"), rank(s, c + d)] == [ttft_long, sched_long, sched, rk], session
        assert [x for (x,) in figs(s, c + d, "outside_long_median_s")] == outside, session
