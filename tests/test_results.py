"""The committed GPU results reproduce the figures the README and the issue notes quote.

Each test reads a results file a GPU session wrote (`benchmarks/results/...`) and recomputes
the ratios, per-layer costs and bound arithmetic quoted from it, so a figure in the README
cannot drift from the JSON it came from."""

from __future__ import annotations

import json
from pathlib import Path

from sglang_indexcache.bench import agentic_report, report

# Session 13's (a) Full layer at +2,048 on a 122,880-token prefix: its indexer's ms (logits 2.050,
# top-k 1.003) over the (query, key) pairs it scored, the per-pair cost the agentic notes scale
S13_PAIRS = 2048 * (122880 + 1024)
S13_INDEXER_S_PER_PAIR = (2.050 + 1.003) / S13_PAIRS / 1e3


# the figures an agentic level's table row quotes, and the ratios over (a) and (d), in that order
RATIO_FIGS = ("ttft_long_median_s", "ttft_long_p90_s", "ttft_median_s", "ttft_p90_s", "tpot_median_ms", "sessions_per_min")


def c_over_d(ratios: dict, level: str, figs: tuple = RATIO_FIGS) -> tuple:
    """(c) over (d) at a concurrency level of a merge with several servers each: each figure's
    ratio of medians and its [worst, best] pairing, rounded to 3 places."""
    return ([round(ratios["over_d"][level]["c"][f], 3) for f in figs],
            [[round(x, 3) for x in ratios["over_d_range"][level]["c"][f]] for f in figs])


def fpm_rows(folder: Path, level: str = "c16") -> list:
    """The forward messages of the one replay at `level` in a server's folder (`bench agentic
    --forward-pass-metrics`)."""
    from sglang_indexcache.bench import fpm

    (path,) = folder.glob(f"*-{level}-fpm.jsonl.gz")
    return fpm.read_replay(path)


def replay_rows(folder: Path, level: str = "c16") -> list:
    """The turns of the one replay at `level` in a server's folder, each with its TTFT split by the
    server's log (`ttft_split.rows_from_files`, as `bench split` reads them)."""
    from sglang_indexcache.bench import ttft_split

    (path,) = folder.glob(f"*-{level}.jsonl.gz")
    return ttft_split.rows_from_files(path, ttft_split.server_log(path))


def row_figures(level: dict) -> list:
    """TTFT median, p90, >= 96K median (s, 3 places), TPOT (ms) and sessions/min (2 places)."""
    return [round(level[f], 3) for f in ("ttft_median_s", "ttft_p90_s", "ttft_long_median_s")] \
        + [round(level["tpot_median_ms"], 2), round(level["sessions_per_min"], 2)]


def turns_by_key(configs: dict, keys: str, level: str = "1") -> dict:
    """Each config's turns at a concurrency level by (session, turn)."""
    return {k: {(t["session"], t["turn"]): t for t in configs[k]["levels"][level]["turns"]} for k in keys}


def ttft_and_decode(level: dict) -> tuple:
    """A level's turns summed: their TTFT, and their decode (tokens after the first at the median ITL), s."""
    turns = level["turns"]
    return (sum(t["ttft_s"] for t in turns), sum((t["output_tokens"] - 1) * t["itl_median_s"] for t in turns))


def causal_pairs(turn: dict) -> float:
    """The (query, key) pairs a turn's new tokens score causally on its cached prefix."""
    n = turn["context"] - turn["cached"]
    return n * (turn["cached"] + n / 2)


def test_committed_gpu_results_reproduce_the_quoted_ratios():
    """The README quotes these; the JSON files are what the H200 printed."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    run1 = json.loads((root / "h200-decode-2026-11-24-run1.json").read_text())
    run2 = json.loads((root / "h200-decode-2026-11-24-run2.json").read_text())
    assert round(report.ratios(run1)["decode_tokens_per_s_log"]["b_over_a"], 3) == 1.001
    assert round(report.ratios(run2)["decode_tokens_per_s_log"]["c_over_d"], 3) == 0.997
    for run in (run1, run2):
        for cfg in run["configs"].values():
            d = cfg["decode"]
            assert d["log_lines"] == d["log_graph_lines"] > 300  # every timed step under a CUDA graph
    tp2 = json.loads((root / "h200x2-2026-12-01-session8" / "tp2-decode" / "results.json").read_text())
    assert tp2["tp_size"] == 2 and all("--tp-size 2" in c["decode"]["command"] for c in tp2["configs"].values())
    assert round(report.ratios(tp2)["decode_tokens_per_s_log"]["c_over_d"], 3) == 0.911
    assert round(report.ratios(tp2)["decode_tokens_per_s_wallclock"]["c_over_d"], 3) == 0.876
    # one H200, 2026-12-01: both server orders, the first profiled
    s10 = root / "h200-2026-12-01-session10"
    cd, dc = (json.loads((s10 / d / "results.json").read_text()) for d in ("decode-cd", "decode-dc2"))
    assert list(cd["configs"]) == ["c", "d"] and list(dc["configs"]) == ["d", "c"]
    for run, log, wall in ((cd, 1.0004, 1.211), (dc, 0.9995, 1.053)):
        assert round(report.ratios(run)["decode_tokens_per_s_log"]["c_over_d"], 4) == log
        assert round(report.ratios(run)["decode_tokens_per_s_wallclock"]["c_over_d"], 3) == wall
        for cfg in run["configs"].values():
            assert cfg["decode"]["log_lines"] == cfg["decode"]["log_graph_lines"] == 48
    prof = {k: cd["configs"][k]["decode"]["profile"]["kernels"] for k in "cd"}
    assert prof["c"]["kernels"] == prof["d"]["kernels"] == 6047
    assert [round(prof[k]["busy_us"] / 1000, 2) for k in "cd"] == [49.16, 49.21]


def test_session12_turn_reproduces_the_quoted_figures():
    """One H200, 2026-12-01 (session 12): `bench turn` on unit indexer weights, configs a, m, n,
    p; the per-Full-layer kernel times and forward ratios the README and the issue note quote."""
    from pathlib import Path

    from sglang_indexcache.bench.roofline import per_full_layer

    s12 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200-2026-12-01-session12"
    r = json.loads((s12 / "turn" / "results.json").read_text())
    assert list(r["configs"]) == ["a", "n", "p", "m"] and r["context"] == 122880
    for key in "anpm":
        assert r["configs"][key]["server_env"]["SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS"] == "unit"
    f = per_full_layer(r)
    logits = {k: [round(f[k][n]["indexer logits"], 3) for n in ("1", "64", "512", "2048")] for k in "an"}
    assert logits == {"a": [0.468, 0.501, 0.522, 2.099], "n": [0.01, 0.125, 0.91, 3.659]}
    topk = {k: [round(f[k][n]["top-k"], 2) for n in ("1", "2048", "8192")] for k in "am"}
    assert topk == {"a": [0.06, 1.02, 3.74], "m": [0.03, 0.49, 1.93]}
    fwd = {k: {n: t["forward_median_ms"] for n, t in r["configs"][k]["turns"].items()} for k in "anpm"}
    assert round(fwd["a"]["2048"] / fwd["m"]["2048"], 2) == 1.81 and round(fwd["a"]["8192"] / fwd["m"]["8192"], 2) == 1.91
    # a Full layer's share of a +1 forward: 12 against 3 Full layers, route on (n, p) and off (a, m)
    assert [round((fwd[x]["1"] - fwd[y]["1"]) / 9, 2) for x, y in (("n", "p"), ("a", "m"))] == [0.45, 0.85]
    busy = {k: r["configs"][k]["turns"]["1"]["kernels"]["busy_us"] for k in "anpm"}
    assert [round((busy[x] - busy[y]) / 9 / 1e3, 3) for x, y in (("n", "p"), ("a", "m"))] == [0.064, 0.557]


def test_session13_turn_and_agentic_reproduce_the_quoted_figures():
    """One H200, 2026-12-01 (session 13): `bench turn` a, n, p with the route at N = 128, and
    the agentic (c) run; the figures and the bound arithmetic the README and the issue note quote."""
    from pathlib import Path

    from sglang_indexcache.bench.roofline import per_full_layer

    s13 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200-2026-12-01-session13"
    r = json.loads((s13 / "turn" / "results.json").read_text())
    assert list(r["configs"]) == ["a", "n", "p"] and r["context"] == 122880
    for key in "np":
        env = r["configs"][key]["server_env"]
        assert env["SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS"] == "128" and env["SGLANG_INDEXCACHE_TOPK"] == "v2"
    f = per_full_layer(r)
    assert [round(f[k]["128"]["indexer logits"], 3) for k in "an"] == [0.503, 0.243]
    assert [round(f[k]["2048"][x], 3) for k in "an" for x in ("indexer logits", "top-k")] == [2.05, 1.003, 2.087, 0.499]
    fwd = {k: {n: t["forward_median_ms"] for n, t in r["configs"][k]["turns"].items()} for k in "anp"}
    busy = {k: {n: t["kernels"]["busy_us"] / 1e3 for n, t in r["configs"][k]["turns"].items()} for k in "anp"}
    assert [round(fwd["a"]["2048"] / fwd[k]["2048"], 2) for k in "np"] == [1.07, 1.65]
    assert [round(busy["a"]["2048"] / busy[k]["2048"], 2) for k in "np"] == [1.08, 1.87]
    assert round((busy["n"]["1"] - busy["p"]["1"]) / 9, 3) == 0.064
    # what 2.0x (1/4) and 1.2x (all Full) would take: a free top-k, then logits at the fp8 ceiling
    # (1.05 ms), with the smallest host gaps of any +2,048 forward (7.2 ms, session 12's m)
    free_topk = busy["p"]["2048"] - 3 * f["p"]["2048"]["top-k"]
    assert round(fwd["a"]["2048"] / (free_topk + 7.2), 2) == 1.85
    assert round(fwd["a"]["2048"] / (free_topk - 3 * (f["p"]["2048"]["indexer logits"] - 1.05) + 7.2), 2) == 2.0
    n_free = fwd["n"]["2048"] - 12 * f["n"]["2048"]["top-k"]
    assert round(fwd["a"]["2048"] / n_free, 2) == 1.18
    assert round(fwd["a"]["2048"] / (n_free - 12 * 2048 * (122880 + 2048) * 4 / 4.8e12 * 1e3), 2) == 1.22
    # or v2 kept and the logits faster: 0.61 ms less per Full layer, about 1,400 TFLOP/s (71 % of 1,979)
    cut = (fwd["n"]["2048"] - fwd["a"]["2048"] / 1.2) / 12
    logits = f["n"]["2048"]["indexer logits"] - cut
    flops = 2 * 32 * 128 * 2048 * (122880 + 1024.5)
    assert (round(cut, 2), round(logits, 2), round(flops / logits / 1e9, -2), round(flops / logits / 1e9 / 1979, 2)) \
        == (0.61, 1.48, 1400, 0.71)
    assert [round(flops / f[k]["2048"]["indexer logits"] / 1e9) for k in "an"] == [1014, 996]
    ag = json.loads((s13 / "ag" / "results.json").read_text())["configs"]
    assert list(ag) == ["c"]  # (p) was stopped by the device call's end
    c1 = ag["c"]["levels"]["1"]
    assert c1["failed_rounds"] == 0 and c1["rounds"] == 56 and c1["ttft_long_n"] == 14
    assert [round(c1[k], 3) for k in ("ttft_median_s", "ttft_p90_s", "ttft_long_median_s")] == [0.223, 0.402, 0.384]
    assert round(c1["tpot_median_ms"], 2) == 2.13 and round(c1["sessions_per_min"], 2) == 3.18


def test_session14_agentic_reproduces_the_quoted_figures():
    """One H200, 2026-12-01 (session 14): the agentic (a) at concurrency 16, (c) before and (p)
    after issue 20's kernels at 1 and 16; the figures, the paired turns and the Amdahl estimate
    the README and the issue notes quote."""
    import statistics
    from pathlib import Path

    s14 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200-2026-12-01-session14"
    r = json.loads((s14 / "ag" / "results.json").read_text())
    c = r["configs"]
    assert c["c"]["server_env"]["SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS"] == "0" and "SGLANG_INDEXCACHE_TOPK" not in c["c"]["server_env"]
    assert c["p"]["server_env"]["SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS"] == "128" and c["p"]["server_env"]["SGLANG_INDEXCACHE_TOPK"] == "v2"
    assert sorted(c["a"]["levels"]) == ["16"] and sorted(c["c"]["levels"]) == sorted(c["p"]["levels"]) == ["1", "16"]
    ratios = agentic_report.agentic_ratios(r)
    over_a = ratios["over_a"]["16"]["c"]
    assert [round(over_a[k], 2) for k in ("sessions_per_min", "ttft_median_s", "ttft_p90_s", "ttft_long_median_s",
                                          "tpot_median_ms")] == [1.33, 1.49, 1.54, 1.56, 1.24]
    assert [round(ratios["over_a"]["16"]["p"][k], 2) for k in ("sessions_per_min", "ttft_long_median_s")] == [1.31, 1.58]
    assert [round(ratios["over_c"][lv]["p"][k], 3) for lv in ("1", "16")
            for k in ("ttft_long_median_s", "sessions_per_min")] == [0.936, 0.922, 1.011, 0.985]
    for lv, want in (("1", 0.965), ("16", 1.0015)):  # turn for turn, (c)'s TTFT over (p)'s
        before = {(t["session"], t["turn"]): t["ttft_s"] for t in c["c"]["levels"][lv]["turns"]}
        after = {(t["session"], t["turn"]): t["ttft_s"] for t in c["p"]["levels"][lv]["turns"]}
        assert before.keys() == after.keys()
        assert round(statistics.median(before[k] / after[k] for k in before), 4 if lv == "16" else 3) == want
    rows = c["a"]["levels"]["16"]["turns"]
    assert len(rows) == 424 and all(t["error"] is None for t in rows)
    new = [t["context"] - t["cached"] for t in rows]
    assert (min(new), max(new)) == (1053, 8308)  # no timed turn is short enough for the paged route
    # Amdahl at a saturated GPU: the 9 Full layers (c) drops, at session 13's (a) cost per pair
    pairs = sum(causal_pairs(t) for t in rows)
    saved = 9 * pairs * S13_INDEXER_S_PER_PAIR
    dur = {k: c[k]["levels"]["16"]["duration_s"] for k in "acp"}
    assert (round(pairs / 1e11, 2), round(saved, 1), round(dur["a"] - dur["c"], 1)) == (1.28, 13.9, 18.0)
    v2_saved = 3 * pairs * ((2.050 + 1.003) - (2.087 + 0.499)) / S13_PAIRS / 1e3
    assert round(v2_saved, 1) == 0.7 and round(100 * v2_saved / dur["c"], 1) == 1.3


def test_session15_78_layer_agentic_reproduces_the_quoted_figures():
    """One H200, 2026-12-01 (session 15): one TP-8 rank of GLM-5.2 (78 layers, its declared
    schedule: 21 Full), concurrency 1, (a), (c), (d) one after another; the figures, the c/d pairing
    and the indexer time (c) drops, predicted from session 13's per-layer cost, that the README and
    the issue note quote."""
    import statistics

    s15 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200-2026-12-01-session15"
    r = json.loads((s15 / "ag" / "results.json").read_text())
    c = r["configs"]
    declared = "FFF" + "SSSF" * 18 + "SSS"  # GLM-5.2's index_topk_freq 4, offset 3, as SGLang reads it
    assert r["shape"] == "glm-5.2-tp8" and r["pattern"] == declared and declared.count("F") == 21
    assert all("--cuda-graph-backend-prefill disabled" in c[k]["server_command"] for k in "acd")
    got = {k: row_figures(c[k]["levels"]["1"]) for k in "acd"}
    assert got == {"a": [0.692, 1.345, 1.035, 15.6, 0.53], "c": [0.645, 0.897, 0.766, 14.09, 0.6],
                   "d": [0.548, 0.919, 0.783, 14.09, 0.61]}
    ratios = agentic_report.agentic_ratios(r)
    assert [round(ratios["over_a"]["1"]["c"][f], 3) for f in RATIO_FIGS] == [1.351, 1.554, 1.073, 1.5, 1.107, 1.142]
    assert round(ratios["over_a"]["1"]["d"]["ttft_long_median_s"], 3) == 1.321
    assert [round(ratios["over_d"]["1"]["c"][f], 3) for f in RATIO_FIGS] == [1.023, 0.959, 0.851, 1.025, 1.0, 0.988]
    turns = turns_by_key(c, "acd")
    assert turns["a"].keys() == turns["c"].keys() == turns["d"].keys() and len(turns["a"]) == 29
    assert all(t["error"] is None for k in "acd" for t in turns[k].values())
    keys = sorted(turns["a"])
    assert round(statistics.median(turns["d"][k]["ttft_s"] / turns["c"][k]["ttft_s"] for k in keys), 3) == 0.939
    # (c) drops 57 Full layers, each at session 13's (a) indexer cost per (query, key) pair
    later = [k for k in keys if k[1] > 0]  # the first turn is a cold 8K prefill

    def dropped(t):
        return 57 * S13_INDEXER_S_PER_PAIR * causal_pairs(t)

    predicted = sum(dropped(turns["a"][k]) for k in later)
    observed = sum(turns["a"][k]["ttft_s"] - turns["c"][k]["ttft_s"] for k in later)
    assert (round(predicted, 2), round(observed, 2)) == (5.4, 5.66)
    long_ = [k for k in keys if turns["a"][k]["context"] >= agentic_report.LONG_CONTEXT]
    assert len(long_) == 7 == c["a"]["levels"]["1"]["ttft_long_n"]
    assert round(statistics.median(dropped(turns["a"][k]) for k in long_), 3) == 0.304
    assert round(statistics.median(turns["a"][k]["ttft_s"] - turns["c"][k]["ttft_s"] for k in long_), 3) == 0.28
    # what every config pays alike: the chat door and the eager extend of a one-token turn at 122K
    probe = {k: c[k]["probe"] for k in "acd"}
    assert [round(probe[k]["chat_s"], 3) for k in "acd"] == [0.643, 0.598, 0.449]
    assert [round(probe[k]["ids_s"], 3) for k in "acd"] == [0.287, 0.325, 0.276]


def test_session20_78_layer_agentic_with_prefill_graphs_reproduces_the_quoted_figures():
    """One H200, 2026-12-02 (session 20): session 15's 78-layer shape again, now with SGLang's
    default prefill graphs and the shape tokenizer SGLang's chat door encodes in parallel, (c), (a),
    (d) one server each at concurrency 1; the figures and ratios the README and the issue note
    quote, the indexer time (c) drops against session 13's per-layer cost, and the bound on (c)
    over (a) were (c)'s own 21 indexers free."""
    import statistics

    s20 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200-2026-12-02-session20"
    r = json.loads((s20 / "glm" / "results.json").read_text())
    c = r["configs"]
    assert r["shape"] == "glm-5.2-tp8" and r["pattern"] == "FFF" + "SSSF" * 18 + "SSS"
    assert r["trace"]["sha256"].startswith("821ea80f")
    # the graphs on: no server turned them off
    assert not any("--cuda-graph-backend-prefill" in c[k]["server_command"] for k in "acd")
    assert all(c[k]["server_env"]["SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS"] == "unit" for k in "acd")
    got = {k: row_figures(c[k]["levels"]["1"]) for k in "acd"}
    assert got == {"a": [0.761, 1.354, 0.829, 15.46, 0.64], "c": [0.566, 0.842, 0.538, 14.03, 0.74],
                   "d": [0.569, 0.83, 0.538, 14.0, 0.75]}
    ratios = agentic_report.agentic_ratios(r)
    assert [round(ratios["over_a"]["1"]["c"][f], 3) for f in RATIO_FIGS] == [1.543, 1.695, 1.344, 1.607, 1.102, 1.162]
    assert [round(ratios["over_d"]["1"]["c"][f], 3) for f in RATIO_FIGS] == [1.0, 0.987, 1.004, 0.985, 0.998, 0.997]
    turns = turns_by_key(c, "acd")
    assert turns["a"].keys() == turns["c"].keys() == turns["d"].keys() and len(turns["a"]) == 24
    assert all(t["error"] is None for k in "acd" for t in turns[k].values())
    keys = sorted(turns["a"])
    long_ = [k for k in keys if turns["a"][k]["context"] >= agentic_report.LONG_CONTEXT]
    assert len(long_) == 7 == c["a"]["levels"]["1"]["ttft_long_n"]

    def over(x, y, ks):
        return round(statistics.median(turns[x][k]["ttft_s"] / turns[y][k]["ttft_s"] for k in ks), 3)

    assert (over("a", "c", long_), over("a", "c", keys), over("d", "c", long_)) == (1.621, 1.426, 0.995)
    # (c) drops 57 Full layers, each at session 13's (a) indexer cost per (query, key) pair
    later = [k for k in keys if k[1] > 0]
    predicted = sum(57 * S13_INDEXER_S_PER_PAIR * causal_pairs(turns["a"][k]) for k in later)
    observed = sum(turns["a"][k]["ttft_s"] - turns["c"][k]["ttft_s"] for k in later)
    assert (round(predicted, 2), round(observed, 2)) == (5.52, 6.15)
    # at >= 96K: the 78 indexers are half of an (a) turn; (c) over (a) were (c)'s 21 free
    assert round(statistics.median(78 * S13_INDEXER_S_PER_PAIR * causal_pairs(turns["a"][k]) / turns["a"][k]["ttft_s"]
                                   for k in long_), 2) == 0.5
    bound = statistics.median(turns["a"][k]["ttft_s"]
                              / (turns["c"][k]["ttft_s"] - 21 * S13_INDEXER_S_PER_PAIR * causal_pairs(turns["c"][k]))
                              for k in long_)
    assert round(bound, 2) == 2.08
    # the same bound on flash-12 (session 18, concurrency 1, 14 turns at >= 96K): lower
    f = json.loads((s20.parent / "h200-2026-12-02-session18" / "ag" / "results.json").read_text())["configs"]
    ft = turns_by_key(f, "ac")
    flong = [k for k in sorted(ft["a"]) if ft["a"][k]["context"] >= agentic_report.LONG_CONTEXT]
    assert len(flong) == 14
    fshare = statistics.median(12 * S13_INDEXER_S_PER_PAIR * causal_pairs(ft["a"][k]) / ft["a"][k]["ttft_s"] for k in flong)
    fbound = statistics.median(ft["a"][k]["ttft_s"]
                               / (ft["c"][k]["ttft_s"] - 3 * S13_INDEXER_S_PER_PAIR * causal_pairs(ft["c"][k]))
                               for k in flong)
    assert (round(fshare, 2), round(fbound, 2)) == (0.34, 1.43)
    # the doors at 124,562 tokens, one new token: the chat door now costs what token ids do
    assert [round(c[k]["probe"]["chat_s"], 3) for k in "acd"] == [0.134, 0.128, 0.09]
    assert [round(c[k]["probe"]["ids_s"], 3) for k in "acd"] == [0.141, 0.106, 0.081]


def test_where_the_time_goes_at_concurrency_16_reproduces_the_quoted_figures():
    """The README's split of session 18's concurrency-16 sessions into their turns' TTFT and decode,
    and session 12's one-turn GPU time by kernel family, (a) against (m)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    r = json.loads((root / "h200-2026-12-02-session18" / "ag" / "results.json").read_text())
    split = {}
    for k in "ac":
        level = r["configs"][k]["levels"]["16"]
        assert len(level["turns"]) == 424 and all(t["error"] is None for t in level["turns"])
        split[k] = (*ttft_and_decode(level), level["sessions_per_min"])
    assert {k: (round(v[0], 1), round(v[1], 1), round(v[0] / (v[0] + v[1]), 2), round(v[2], 2)) for k, v in split.items()} \
        == {"a": (472.0, 276.6, 0.63, 13.02), "c": (335.2, 270.8, 0.55, 15.95)}
    a, c = split["a"], split["c"]
    assert (round(a[0] / c[0], 2), round(a[1] / c[1], 2), round(c[2] / a[2], 2), round(sum(a[:2]) / sum(c[:2]), 2)) \
        == (1.41, 1.02, 1.23, 1.24)

    t = json.loads((root / "h200-2026-12-01-session12" / "turn" / "results.json").read_text())
    main = ("indexer logits", "top-k", "sparse attention", "MoE", "GEMM")
    got = {}
    for new in ("2048", "8192"):
        for k in "am":
            fams = t["configs"][k]["turns"][new]["kernels"]["families"]
            ms = [fams[f]["us"] / 1e3 for f in main]
            rest = sum(v["us"] for f, v in fams.items() if f not in main) / 1e3
            got[new, k] = [round(t["configs"][k]["turns"][new]["kernels"]["busy_us"] / 1e3, 1),
                           *(round(x, 1) for x in ms), round(rest, 1)]
    assert got == {("2048", "a"): [65.8, 25.2, 12.2, 13.2, 8.1, 4.1, 3.1],
                   ("2048", "m"): [34.8, 6.2, 1.5, 12.3, 8.1, 3.7, 3.1],
                   ("8192", "a"): [259.3, 109.1, 44.8, 53.6, 26.0, 14.8, 11.1],
                   ("8192", "m"): [133.6, 26.6, 5.8, 50.4, 26.0, 13.7, 11.1]}
    share = {new: round((got[new, "m"][1] + got[new, "m"][2]) / sum(got[new, "m"][1:]), 2) for new in ("2048", "8192")}
    assert share == {"2048": 0.22, "8192": 0.24}


def test_session11_results_reproduce_the_quoted_figures(tmp_path):
    """Two H200s, 2026-12-01 (session 11): the MTP decode table, the agentic sessions and the
    search cost the README and the issue notes quote, from the committed JSON."""
    from pathlib import Path

    s11 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200x2-2026-12-01-session11"
    mtp, plain = (json.loads((s11 / d / "results.json").read_text()) for d in ("decode-mtp", "decode-nomtp"))
    assert mtp["configs"]["c"]["decode"]["mtp"] and not plain["configs"]["c"]["decode"]["mtp"]
    assert mtp["configs"]["c"]["decode"]["accept_length"] == 1.0  # dummy weights: every draft rejected
    log = {k: report.ratios(r)["decode_tokens_per_s_log"] for k, r in (("mtp", mtp), ("plain", plain))}
    assert [round(log[k]["c_over_a"], 3) for k in ("mtp", "plain")] == [1.072, 1.267]
    assert [round(log[k]["c_over_d"], 3) for k in ("mtp", "plain")] == [1.337, 0.997]
    busy = {k: {c: r["configs"][c]["decode"]["profile"]["kernels"] for c in "adc"}
            for k, r in (("mtp", mtp), ("plain", plain))}
    for k, kernels in (("mtp", 4215), ("plain", 3143)):  # c runs d's kernels, one for one
        assert busy[k]["c"]["kernels"] == busy[k]["d"]["kernels"] == kernels
        assert abs(busy[k]["c"]["busy_us"] / busy[k]["d"]["busy_us"] - 1) < 0.003
    gain = {k: busy[k]["a"]["busy_us"] / busy[k]["c"]["busy_us"] for k in busy}
    assert [round(gain["mtp"], 3), round(gain["plain"], 3), round(gain["mtp"] / gain["plain"], 3)] == [1.271, 1.32, 0.963]

    # the decode figure gains a panel of the profiled GPU time per kernel family
    import struct

    def png_width(results, name):
        report.plot(results, tmp_path / name)
        return struct.unpack(">I", (tmp_path / name).read_bytes()[16:20])[0]

    unprofiled = {**mtp, "configs": {k: {**v, "decode": {**v["decode"], "profile": None}} for k, v in mtp["configs"].items()}}
    assert png_width(mtp, "profiled.png") > 1.4 * png_width(unprofiled, "plain.png")

    ag = json.loads((s11 / "ag" / "results.json").read_text())
    assert list(ag["configs"]) == ["a", "c", "d", "e"] and ag["trace"]["spec"]["sessions"] == 16
    over_a, over_d = ag["ratios"]["over_a"], ag["ratios"]["over_d"]
    assert [round(over_a[c]["c"]["ttft_long_median_s"], 2) for c in ("1", "4")] == [1.25, 1.49]
    assert [round(over_a[c]["d"]["ttft_long_median_s"], 2) for c in ("1", "4")] == [1.43, 1.43]
    assert [round(over_d[c]["c"]["ttft_long_median_s"], 2) for c in ("1", "4")] == [0.87, 1.04]
    for entry in ag["configs"].values():
        for level in entry["levels"].values():
            assert level["failed_rounds"] == 0 and level["ttft_long_n"] == 14 * level["sessions"] // 2

    search = json.loads((s11 / "search" / "results.json").read_text())
    assert search["layers"] == 78 and search["calibration"]["tokens"] == 65536
    assert round(search["speedup"], 1) == 13.2
    assert [round(search[k]["evals_per_hour"]) for k in ("switching", "restart")] == [635, 48]
    assert max(search["loss_differences"].values()) == 0.0


def test_roofline_of_the_committed_h200_turn_profile():
    """The session-4 turn profile (no indexer dimensions recorded then: taken from its shape)."""
    from sglang_indexcache.bench.roofline import indexer_dims, roofline, roofline_table

    root = Path(__file__).resolve().parent.parent
    results = json.loads((root / "benchmarks/results/h200x2-2026-11-30-session4/turn-flash12.json").read_text())
    assert indexer_dims(results) == {"heads": 32, "head_dim": 128, "topk": 2048}
    rows = roofline(results)
    assert {(r["config"], r["new"]) for r in rows} == {(k, n) for k in "acg" for n in (1, 2048, 8192)}
    assert "x floor" in roofline_table(results)
