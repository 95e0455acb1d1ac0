"""The committed 78-layer (`glm-5.2-tp8`) agentic results of sessions 21 to 25 reproduce the
figures the README and the issue notes quote (the earlier sessions' are in `test_results.py`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from test_results import RATIO_FIGS, row_figures, turns_by_key

from sglang_indexcache.bench import agentic_report

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
LONG = agentic_report.LONG_CONTEXT


def over(turns: dict, x: str, y: str, keys: list) -> float:
    """Turn for turn: the median of x's TTFT over y's on the same turns (3 places)."""
    return round(statistics.median(turns[x][k]["ttft_s"] / turns[y][k]["ttft_s"] for k in keys), 3)


def test_session21_v2_top_k_against_dsa_all_full_reproduces_the_quoted_figures():
    """One H200, 2026-12-02 (session 21): (m) indexcache at the declared schedule with the v2
    top-k and (a) dsa all Full on the same two sessions, (e) 11 of 78 Full on one; the medians'
    ratios, the turn-for-turn ones, (e)'s pairs left undivided, and the comparison with session 20's
    servers on session 0's turns."""
    s21 = RESULTS / "h200-2026-12-02-session21"
    r = json.loads((s21 / "glm" / "results.json").read_text())
    c = r["configs"]
    assert r["shape"] == "glm-5.2-tp8" and r["trace"]["sha256"].startswith("821ea80f")
    assert c["m"]["server_env"]["SGLANG_INDEXCACHE_TOPK"] == "v2"
    assert "SGLANG_INDEXCACHE_TOPK" not in c["e"]["server_env"]  # SGLang's top-k, the default when it ran
    e_cmd = c["e"]["server_command"].split()
    assert e_cmd[e_cmd.index("--index-cache-pattern") + 1].count("F") == 11
    assert not any("--cuda-graph-backend-prefill" in c[k]["server_command"] for k in "ame")  # SGLang's graphs
    assert [c[k]["levels"]["1"]["sessions"] for k in "ame"] == [2, 2, 1]
    got = {k: row_figures(c[k]["levels"]["1"]) for k in "ame"}
    assert got == {"a": [0.832, 1.385, 0.97, 15.46, 0.66], "m": [0.572, 0.831, 0.566, 13.98, 0.78],
                   "e": [0.538, 0.756, 0.529, 13.75, 0.76]}
    ratios = agentic_report.agentic_ratios(r)
    assert [round(ratios["over_a"]["1"]["m"][f], 3) for f in RATIO_FIGS] == [1.713, 1.75, 1.455, 1.667, 1.106, 1.174]
    assert ratios["over_a"]["1"]["e"] == {} and ratios["sessions_over_a"]["1"] == {"e": [1, 2]}
    turns = turns_by_key(c, "ame")
    assert all(t["error"] is None for k in "ame" for t in turns[k].values())
    assert turns["a"].keys() == turns["m"].keys() and len(turns["a"]) == 46
    keys = sorted(turns["a"])
    long_ = [k for k in keys if turns["a"][k]["context"] >= LONG]
    assert len(long_) == 14
    assert (over(turns, "a", "m", long_), over(turns, "a", "m", keys)) == (1.717, 1.494)
    ratios_long = sorted(turns["a"][k]["ttft_s"] / turns["m"][k]["ttft_s"] for k in long_)
    assert sum(x >= 1.6 for x in ratios_long) == 12 and [round(x, 2) for x in ratios_long[:2]] == [1.47, 1.52]
    s0_long = [k for k in long_ if k[0] == 0]
    assert (over(turns, "a", "m", s0_long), over(turns, "a", "m", [k for k in long_ if k[0] == 1])) == (1.75, 1.705)
    assert round(statistics.median(turns["a"][k]["ttft_s"] for k in s0_long)
                 / statistics.median(turns["m"][k]["ttft_s"] for k in s0_long), 3) == 1.525
    # (e) ran session 0 only: turn for turn over (a) and over (m)
    e_keys = sorted(turns["e"])
    e_long = [k for k in e_keys if turns["e"][k]["context"] >= LONG]
    assert (over(turns, "a", "e", e_long), over(turns, "a", "e", e_keys)) == (1.804, 1.558)
    assert (over(turns, "m", "e", e_long), over(turns, "m", "e", e_keys)) == (1.077, 1.049)
    # against session 20's servers (SGLang's top-k in (c)), session 0's turns
    s20 = json.loads((RESULTS / "h200-2026-12-02-session20" / "glm" / "results.json").read_text())["configs"]
    both = {**{k + "20": v for k, v in turns_by_key(s20, "acd").items()}, **turns}
    s0 = [k for k in keys if k[0] == 0]
    assert (over(both, "c20", "m", s0_long), over(both, "c20", "m", s0)) == (1.0, 1.003)
    assert (over(both, "d20", "m", s0_long), over(both, "d20", "m", s0)) == (1.007, 0.999)
    assert (over(both, "a", "a20", s0_long), over(both, "a", "a20", s0)) == (1.02, 1.016)
    assert (over(both, "a20", "c20", s0_long), over(both, "a", "m", s0_long)) == (1.621, 1.75)
    # the probes at 124,562 tokens, one new token: chat door, /generate text, token ids
    assert [[round(c[k]["probe"][d], 3) for d in ("chat_s", "text_s", "ids_s")] for k in "ame"] == [
        [0.167, 0.416, 0.16], [0.106, 0.279, 0.099], [0.121, 0.319, 0.105]]


def test_session23_indexcache_against_native_sharing_on_two_servers_each_reproduces_the_quoted_figures():
    """One H200, 2026-12-03 (session 23): (c) indexcache and (d) dsa native sharing with the same
    pattern, two servers each run as separate invocations (c, d, d, c) and joined by `bench merge`:
    the committed join is what merging the four files gives, and its figures, ratios (medians and
    worst pairing), turn-for-turn ratios and the probes are the ones quoted."""
    from sglang_indexcache.bench.agentic_runs import merge_results

    s23 = RESULTS / "h200-2026-12-03-session23"
    files = [s23 / f"glm-{s}" / "results.json" for s in ("c0", "d0", "d1", "c1")]
    r = json.loads((s23 / "glm" / "results.json").read_text())
    c = r["configs"]
    assert r["shape"] == "glm-5.2-tp8" and r["trace"]["sha256"].startswith("821ea80f")
    assert r["pattern"] == "FFF" + "SSSF" * 18 + "SSS"
    assert [c[k]["servers"] for k in "cd"] == [2, 2] and c["c"]["levels"]["1"]["run_servers"] == [0, 1]
    assert [Path(f).parent.name for f in c["c"]["merged_from"]] == ["glm-c0", "glm-c1"]
    assert "SGLANG_INDEXCACHE_TOPK" not in c["c"]["server_env"]  # the package's defaults: v2
    assert json.loads((files[0]).read_text())["kernel_defaults"]["SGLANG_INDEXCACHE_TOPK"] == "v2"
    again = merge_results([str(f) for f in files])
    assert {k: again["configs"][k]["levels"] for k in "cd"} == {k: c[k]["levels"] for k in "cd"}
    assert {k: row_figures(c[k]["levels"]["1"]) for k in "cd"} == {
        "c": [0.571, 0.806, 0.522, 14.05, 0.75], "d": [0.573, 0.84, 0.538, 14.04, 0.74]}
    ratios = agentic_report.agentic_ratios(r)
    assert ratios == again["ratios"]
    assert [round(ratios["over_d"]["1"]["c"][f], 3) for f in RATIO_FIGS] == [1.03, 1.053, 1.003, 1.042, 1.0, 1.004]
    worst = {f: round(lo, 3) for f, (lo, _) in ratios["over_d_range"]["1"]["c"].items()}
    assert min(worst.values()) == 0.993 == worst["ttft_median_s"]
    assert all(v >= 0.999 for f, v in worst.items() if f != "ttft_median_s")
    paired = ratios["paired_over_d"]["1"]["c"]
    assert (paired["turns"], paired["long_turns"]) == (24, 7)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total")] == [1.028, 1.059, 1.026]
    # server against server at >= 96K, turn for turn
    single = {s: json.loads(f.read_text())["configs"][s[0]]["levels"]["1"] for s, f in zip(("c0", "d0", "d1", "c1"), files)}
    assert [round(agentic_report.paired_turns(single[d]["turns"], single[x]["turns"])["median_long"], 3)
            for x, d in (("c0", "d0"), ("c0", "d1"), ("c1", "d0"), ("c1", "d1"))] == [1.033, 1.077, 1.056, 1.086]
    # the probes (18 new tokens on 124,544 cached): chat door, /generate text, token ids, per server
    assert [[round(c[k]["per_server"][i]["probe"][d], 3) for d in ("chat_s", "text_s", "ids_s")]
            for k in "cd" for i in (0, 1)] == [[0.141, 0.411, 0.161], [0.125, 0.413, 0.132],
                                               [0.111, 0.308, 0.103], [0.129, 0.363, 0.118]]


def probe_forward_ms(log_gz: Path, context: int) -> dict:
    """A server's probe requests (the first ten at `context` tokens in its log: the cold one, then
    chat, text, ids three times) split by door: the medians of their server forward times, ms."""
    import gzip

    from sglang_indexcache.bench import common
    from sglang_indexcache.bench.probe import forward_by_door

    text = gzip.open(log_gz, "rt", errors="replace").read()
    lines = [m for m in common.TIME_STATS.finditer(text) if int(m[1]) == context][:10]
    doors = forward_by_door("".join(m[0] for m in lines), ["cold_chat_s"] + ["chat_s", "text_s", "ids_s"] * 3)
    return {k: round(v * 1e3, 1) for k, v in doors["forward_s"].items() if k != "cold_chat_s"}


def test_session24_concurrency_4_and_the_short_turn_reproduce_the_quoted_figures():
    """One H200, 2026-12-03 (session 24): (c) indexcache and (d) dsa native sharing at concurrency 4
    (4 sessions, one server each, joined by `bench merge`); one turn of 18 and of 2,048 new tokens on
    124,544 cached, timed and profiled through `bench turn` for (c), (d) and (c) without the paged
    route (p); and the probes split into the server's forward and the rest."""
    from sglang_indexcache.bench.agentic_runs import merge_results

    s24 = RESULTS / "h200-2026-12-03-session24"
    files = [s24 / f"glm-{s}4" / "results.json" for s in "cd"]
    r = json.loads((s24 / "glm4" / "results.json").read_text())
    c = r["configs"]
    assert r["shape"] == "glm-5.2-tp8" and r["trace"]["sha256"].startswith("821ea80f")
    again = merge_results([str(f) for f in files])
    assert {k: again["configs"][k]["levels"] for k in "cd"} == {k: c[k]["levels"] for k in "cd"}
    assert [c[k]["levels"]["4"]["sessions"] for k in "cd"] == [4, 4]
    assert not any("--cuda-graph-backend-prefill" in c[k]["server_command"] for k in "cd")  # SGLang's graphs
    assert {k: row_figures(c[k]["levels"]["4"]) for k in "cd"} == {
        "c": [1.913, 2.598, 2.013, 15.73, 1.93], "d": [1.982, 2.672, 2.062, 15.59, 1.93]}
    ratios = agentic_report.agentic_ratios(r)
    assert [round(ratios["over_d"]["4"]["c"][f], 3) for f in RATIO_FIGS] == [1.024, 1.007, 1.036, 1.028, 0.991, 1.002]
    assert min(ratios["over_d"]["4"]["c"].values()) >= 0.99  # issue 14's first target, at concurrency 4
    paired = ratios["paired_over_d"]["4"]["c"]
    assert (paired["turns"], paired["long_turns"], paired["unpaired"]) == (94, 28, 0)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total")] == [1.002, 1.003, 1.004]
    turns = turns_by_key(c, "cd", "4")
    assert all(t["error"] is None for k in "cd" for t in turns[k].values())
    assert [round(c[k]["levels"]["4"]["server"]["decode_tokens_per_s_median"]) for k in "cd"] == [267, 268]
    # the probes: the client's time per door, then the server's forward time of the same requests
    assert [[round(c[k]["probe"][d], 3) for d in ("chat_s", "text_s", "ids_s")] for k in "cd"] == [
        [0.172, 0.351, 0.162], [0.09, 0.224, 0.077]]
    assert probe_forward_ms(s24 / "glm-c4" / "c-server.log.gz", 124562) == {"chat_s": 81.5, "text_s": 80.0, "ids_s": 80.3}
    assert probe_forward_ms(s24 / "glm-d4" / "d-server.log.gz", 124562) == {"chat_s": 37.8, "text_s": 37.9, "ids_s": 37.7}
    s23 = RESULTS / "h200-2026-12-03-session23"
    assert [probe_forward_ms(s23 / f"glm-{s}" / f"{s[0]}-server.log.gz", 124562)["ids_s"]
            for s in ("c0", "d0", "d1", "c1")] == [79.5, 43.4, 52.9, 53.2]
    # one turn, timed (server forward, median of 5) and profiled (GPU busy), per configuration
    t = json.loads((s24 / "turn" / "results.json").read_text())
    assert t["context"] == 124544 and t["prefill_graphs"] == "sglang"
    tc = t["configs"]
    assert tc["p"]["server_env"]["SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS"] == "0"
    assert "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS" not in tc["c"]["server_env"]  # the default, 128
    assert all(x == 124544 for k in "cdp" for n in ("18", "2048") for x in tc[k]["turns"][n]["cached_tokens"])
    fwd = {k: [round(tc[k]["turns"][n]["forward_median_ms"], 1) for n in ("18", "2048")] for k in "cdp"}
    assert fwd == {"c": [32.1, 235.4], "d": [37.9, 249.2], "p": [37.4, 236.0]}
    busy = {k: [round(tc[k]["turns"][n]["kernels"]["busy_us"] / 1e3, 1) for n in ("18", "2048")] for k in "cdp"}
    assert busy == {"c": [20.8, 228.0], "d": [31.3, 241.8], "p": [30.5, 228.6]}


def turn18(results: Path, key: str) -> dict:
    """A `bench turn` config's +18 turn: server forward (median, ms), GPU busy (ms), graph-launch
    median (us) and the host time per aten::slice call (us; no GPU work: a measure of the host)."""
    t = json.loads(results.read_text())["configs"][key]["turns"]["18"]
    k = t["kernels"]
    sl = k["host_ops"]["aten::slice"]
    assert set(t["cached_tokens"]) == {124544}
    return {"fwd": round(t["forward_median_ms"], 1), "busy": round(k["busy_us"] / 1e3, 1),
            "launch": round(k["graph_launches"]["median_us"]), "slice": round(sl["us"] / sl["calls"], 1)}


def test_session25_all_full_at_concurrency_4_and_the_host_bound_short_turn_reproduce_the_quoted_figures():
    """One H200, 2026-12-03 (session 25): (a) dsa all Full at concurrency 4 (one server), joined with
    session 24's (c) and (d) by `bench merge` (across sessions: the same trace, flags and kind of
    machine); the 18-token turn through turn servers given the agentic servers' flags."""
    from sglang_indexcache.bench.agentic_runs import merge_results

    s24, s25 = RESULTS / "h200-2026-12-03-session24", RESULTS / "h200-2026-12-03-session25"
    files = [s24 / "glm-c4" / "results.json", s24 / "glm-d4" / "results.json", s25 / "glm-a4" / "results.json"]
    r = json.loads((s25 / "acd4" / "results.json").read_text())
    c = r["configs"]
    assert r["trace"]["sha256"].startswith("821ea80f")
    again = merge_results([str(f) for f in files])
    assert {k: again["configs"][k]["levels"] for k in "acd"} == {k: c[k]["levels"] for k in "acd"}
    assert row_figures(c["a"]["levels"]["4"]) == [3.155, 4.64, 3.789, 17.8, 1.46]
    assert round(c["a"]["levels"]["4"]["ttft_long_p90_s"], 3) == 4.963
    assert all(t["error"] is None for t in turns_by_key(c, "a", "4")["a"].values())
    ratios = agentic_report.agentic_ratios(r)
    assert [round(ratios["over_a"]["4"]["c"][f], 3) for f in RATIO_FIGS] == [1.883, 1.712, 1.65, 1.786, 1.132, 1.324]
    paired = ratios["paired_over_a"]["4"]["c"]
    assert (paired["turns"], paired["long_turns"]) == (94, 28)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total")] == [1.678, 1.869, 1.621]
    # the probe records the server's forward per door itself since session 24
    fwd = c["a"]["probe"]["forward_s"]
    assert [round(fwd[d] * 1e3, 1) for d in ("chat_s", "text_s", "ids_s")] == [149.3, 142.4, 138.8]
    assert round(c["a"]["probe"]["profile"]["graph_launches"]["median_us"]) == 1336
    # the short turn, one server per row: (c)'s forward follows the host's speed (the same 1,294
    # aten::slice calls, SGLang's own graph launches); (d)'s stays near its GPU time
    runs = {name: turn18(s25 / name / "results.json", name[5]) for name in ("turn-c-ag", "turn-d-ag", "turn-c-m", "turn-c-w")}
    runs.update({f"s24-{k}": turn18(s24 / "turn" / "results.json", k) for k in "cd"})
    assert runs == {
        "s24-c": {"fwd": 32.1, "busy": 20.8, "launch": 342, "slice": 1.7},
        "turn-c-ag": {"fwd": 47.0, "busy": 20.8, "launch": 490, "slice": 2.6},
        "turn-c-m": {"fwd": 57.9, "busy": 20.8, "launch": 696, "slice": 3.5},
        "turn-c-w": {"fwd": 72.3, "busy": 20.8, "launch": 838, "slice": 4.3},
        "s24-d": {"fwd": 37.9, "busy": 31.3, "launch": 398, "slice": 2.0},
        "turn-d-ag": {"fwd": 38.2, "busy": 31.2, "launch": 410, "slice": 2.3},
    }
    cs = [runs[n] for n in ("s24-c", "turn-c-ag", "turn-c-m", "turn-c-w")]
    assert all(a["fwd"] < b["fwd"] and a["slice"] < b["slice"] for a, b in zip(cs, cs[1:]))


def test_session26_the_fused_v2_paged_top_k_reproduces_the_quoted_figures():
    """One H200, 2026-12-04 (session 26): `v2-paged` (backend/csrc/paged_topk.cuh) against `v2`
    (the torch map) and SGLang's kernels in `bench topk`, and the 18-token turn on 124,544 cached
    through (c) with each, and (d), one server each, in one session."""
    s26 = RESULTS / "h200-2026-12-04-session26"
    r = json.loads((s26 / "topk" / "results.json").read_text())
    got = {(e["dist"], e["rows"], name): (round(x["ms"], 3), round(x["host_ms"], 3), x["mismatched_rows"])
           for e in r["shapes"] for name, x in e["impls"].items()}
    assert {k: v for k, v in got.items() if k[0] == "indexer"} == {
        ("indexer", 18, "sgl-legacy-paged"): (0.079, 0.022, 0), ("indexer", 18, "sgl-v2-ragged"): (0.037, 0.009, 0),
        ("indexer", 18, "ours-v2"): (0.156, 0.121, 0), ("indexer", 18, "ours-v2-paged"): (0.039, 0.009, 0),
        ("indexer", 2048, "sgl-legacy-paged"): (1.018, 0.021, 0), ("indexer", 2048, "sgl-v2-ragged"): (0.501, 0.013, 0),
        ("indexer", 2048, "ours-v2"): (0.636, 0.135, 0), ("indexer", 2048, "ours-v2-paged"): (0.504, 0.014, 0)}
    assert [got[("dummy", 2048, n)][:2] for n in ("ours-v2", "ours-v2-paged")] == [(1.205, 0.144), (0.998, 0.013)]
    assert all(v[2] == 0 for v in got.values()) and all(k[0] in ("indexer", "dummy") for k in got)
    # the turn: servers in the order run; hosts within 12 % of each other (aten::slice 4.2 to 4.8 us)
    runs = {n: turn18(s26 / n / "results.json", k) for n, k in
            (("turn-cp", "c"), ("turn-c2", "c"), ("turn-d", "d"), ("turn-cp2", "c"))}
    assert runs == {
        "turn-cp": {"fwd": 52.5, "busy": 20.5, "launch": 871, "slice": 4.2},
        "turn-c2": {"fwd": 76.4, "busy": 20.8, "launch": 868, "slice": 4.4},
        "turn-d": {"fwd": 66.6, "busy": 31.3, "launch": 754, "slice": 4.3},
        "turn-cp2": {"fwd": 78.6, "busy": 20.5, "launch": 972, "slice": 4.8},
    }
    split, kernels, env, fused = {}, {}, {}, {}
    for n, k in (("turn-cp", "c"), ("turn-c2", "c"), ("turn-d", "d"), ("turn-cp2", "c")):
        c = json.loads((s26 / n / "results.json").read_text())["configs"][k]
        t = c["turns"]["18"]["kernels"]
        sp, sl = t["host_ops"]["sglang::pcg_dsa_indexer_prefill_split"], t["host_ops"]["aten::slice"]
        assert sp["calls"] == 21  # one per Full layer
        split[n] = (round(sp["us"] / 1e3, 1), round(sp["us"] / (sl["us"] / sl["calls"]) / 1e3, 2))  # ms, k slices
        kernels[n] = t["kernels"]
        env[n] = c["server_env"].get("SGLANG_INDEXCACHE_TOPK")
        fused[n] = sum(v["calls"] for name, v in t["by_kernel"].items() if "topk_ragged_kpool_kernel" in name)
    assert split == {"turn-cp": (23.4, 5.51), "turn-c2": (36.2, 8.25), "turn-d": (23.5, 5.49), "turn-cp2": (26.7, 5.58)}
    assert kernels == {"turn-cp": 2726, "turn-c2": 2936, "turn-d": 2684, "turn-cp2": 2726}
    assert env == {"turn-cp": None, "turn-c2": "v2", "turn-d": None, "turn-cp2": None}  # None: the default, v2-paged
    assert fused == {"turn-cp": 21, "turn-c2": 0, "turn-d": 0, "turn-cp2": 21}
    log = (s26 / "logs" / "test-gpu.txt").read_text()
    assert "v2-paged top-k (bf16 KV) against SGLang's: largest prompt logprob difference 0; against v2: 0" in log
    assert "v2-paged extend top-k calls: 537 fused: 537" in log and "2 passed" in log
    assert "4 passed" in (s26 / "logs" / "test-topk.txt").read_text()
