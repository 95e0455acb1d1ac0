"""The benchmark's own arithmetic and its server-driven decode path (CPU, tiny model).

The numbers that matter come from a GPU (`make bench`); here: SGLang's decode log lines
are parsed as SGLang prints them, the ratios are the ones the README quotes, and the
decode path runs end to end against a real CPU server (radix-warm prompts, B outputs of
the asked length, log lines captured)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sglang_indexcache.bench import agentic_report, common, decode, report

# Lines in the format of SGLang 0.5.23's scheduler metrics reporter (metrics_reporter.py).
LOG = """\
[2026-11-24 08:06:28] Decode batch, #running-req: 16, #token: 1049600, token usage: 0.22, cuda graph: True, gen throughput (token/s): 546.25, #queue-req: 0
[2026-11-24 08:06:28] Decode batch, #running-req: 16, #token: 1049600, token usage: 0.22, cuda graph: True, gen throughput (token/s): 5544.84, #queue-req: 0
[2026-11-24 08:06:28] Decode batch, #running-req: 15, #token: 983040, token usage: 0.21, cuda graph: True, gen throughput (token/s): 5100.00, #queue-req: 0
[2026-11-24 08:06:29] Decode batch, #running-req: 16, #token: 1050624, token usage: 0.22, cuda graph: False, gen throughput (token/s): 5284.66, #queue-req: 0
[2026-11-24 08:06:29] Prefill batch, #new-seq: 16, #new-token: 1024, #cached-token: 1047552, token usage: 0.22, #running-req: 0, #queue-req: 0
"""


def test_decode_log_lines_keep_only_full_batch_lines():
    got = decode.decode_log_lines(LOG, 16)
    assert got["gen_throughput"] == [546.25, 5544.84, 5284.66]
    assert got["lines"] == 3 and got["graph_lines"] == 2
    assert decode.decode_log_lines(LOG, 15)["gen_throughput"] == [5100.0]
    assert decode.decode_log_lines("no decode here", 16) == {"lines": 0, "graph_lines": 0, "gen_throughput": []}


def test_tp_decode_flags_and_refusals(tmp_path):
    """`bench run --tp-size 2` gives every server SGLang's TP flag with the two flags the H200
    pair needs (DESIGN.md) and the no-multicast environment; it runs decode on CUDA only."""
    from sglang_indexcache.bench.__main__ import main

    assert common.tp_args(1) == []
    assert common.tp_args(2) == ["--tp-size", "2", "--disable-custom-all-reduce",
                                 "--enforce-disable-flashinfer-allreduce-fusion"]
    with pytest.raises(ValueError, match="at least 1"):
        common.tp_args(0)
    for extra in (["--phase", "decode", "--device", "cpu", "--configs", "c"], ["--phase", "prefill"]):
        with pytest.raises(SystemExit, match="--tp-size runs --phase decode on CUDA"):
            main(["run", "--out", str(tmp_path), "--tp-size", "2", *extra])


def test_gpu_state_parses_nvidia_smi_as_it_prints():
    """Two H200s as `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` prints them; a
    field it cannot read comes back as its text ([N/A]), a malformed line is an error."""
    rows = common.parse_gpu_state("0, 1980, 3201, 41, 121.53, 86704, 0\n1, 1755, 3201, 55, [N/A], 4, 97\n")
    assert rows[0] == {"index": 0.0, "clocks.sm": 1980.0, "clocks.mem": 3201.0, "temperature.gpu": 41.0,
                       "power.draw": 121.53, "memory.used": 86704.0, "utilization.gpu": 0.0}
    assert rows[1]["power.draw"] == "[N/A]" and rows[1]["clocks.sm"] == 1755.0
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        common.parse_gpu_state("0, 1980\n")


def test_control_config_gives_sglang_dsa_the_schedule_indexcache_installs():
    """Config (i) is upstream `dsa` with the pattern as `indexer_types`, the key indexcache
    installs: SGLang reads it as the same Shared layers as (d)'s `index_topk_pattern`."""
    from sglang_indexcache.sharing import sglang_skips_topk

    pattern = "FSSSFSSSFSSS"
    cfgs = common.configs(12, pattern)
    overrides = {k: json.loads(cfgs[k]["args"][cfgs[k]["args"].index("--json-model-override-args") + 1]) for k in "di"}
    assert cfgs["i"]["args"][:2] == ["--attention-backend", "dsa"]
    for k in "di":
        assert "".join("S" if sglang_skips_topk(overrides[k], n) else "F" for n in range(12)) == pattern


def test_ratios_prefill_and_both_decode_figures():
    def dec(log, wall):
        return {"label": "x", "decode": {"log_gen_throughput_median": log, "tokens_per_s": wall, "kv_pool_tokens": 100,
                           "batch_size": 16, "context": 65536}}

    results = {"configs": {
        "a": {"prefill": {"latency_s": {"16384": {"median": 2.0}}, "kv_pool_tokens": 100}, **dec(5000.0, 4000.0)},
        "b": {"prefill": {"latency_s": {"16384": {"median": 2.02}}, "kv_pool_tokens": 100}, **dec(5050.0, 4400.0)},
        "c": {"prefill": {"latency_s": {"16384": {"median": 1.0}}, "kv_pool_tokens": 110}, **dec(6000.0, 6000.0)},
        "d": {"prefill": {"latency_s": {"16384": {"median": 1.1}}, "kv_pool_tokens": 110}, **dec(5000.0, 5000.0)},
    }}
    r = report.ratios(results)
    assert r["prefill_16384"]["b_over_a_time"] == pytest.approx(1.01)
    assert r["prefill_16384"]["c_speed_over_d"] == pytest.approx(1.1)
    assert r["prefill_16384"]["c_speedup_over_a"] == pytest.approx(2.0)
    assert r["decode_tokens_per_s_log"]["b_over_a"] == pytest.approx(1.01)
    assert r["decode_tokens_per_s_log"]["c_over_d"] == pytest.approx(1.2)
    assert r["decode_tokens_per_s_wallclock"]["b_over_a"] == pytest.approx(1.1)
    assert r["kv_pool_c_over_d"] == 1.0 and r["kv_pool_c_over_a"] == pytest.approx(1.1)
    text = report.table({**results, "ratios": r})
    assert "b/a 1.010" in text and "c/d 1.200" in text


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
    ag = json.loads((s13 / "ag" / "results.json").read_text())["configs"]
    assert list(ag) == ["c"]  # (p) was stopped by the device call's end
    c1 = ag["c"]["levels"]["1"]
    assert c1["failed_rounds"] == 0 and c1["rounds"] == 56 and c1["ttft_long_n"] == 14
    assert [round(c1[k], 3) for k in ("ttft_median_s", "ttft_p90_s", "ttft_long_median_s")] == [0.223, 0.402, 0.384]
    assert round(c1["tpot_median_ms"], 2) == 2.13 and round(c1["sessions_per_min"], 2) == 3.18


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


@pytest.mark.engine
def test_serve_decode_on_cpu(models, tmp_path):
    """The decode path against a real CPU server: radix-warm prompts, the asked number of
    tokens for every request, SGLang's log lines with B running requests captured; then
    --profile-steps: SGLang's profiler stops by itself after that many steps and its trace is
    summarised (CPU activity only: host operators, no kernels)."""
    args = argparse.Namespace(
        decode_batch=3, decode_len=200, decode_short=4, decode_steps=24, decode_repeats=2,
        decode_mem_fraction=0.5, decode_log_interval=2, chunked_prefill_size=128, seed=0,
        device="cpu", timeout=300, profile_steps=3,
    )
    d = decode.serve_decode(models["glm-tiny-full"], [*common.CPU_ARGS, "--attention-backend", "indexcache",
                                                     "--index-cache-pattern", "FSSSFSSS"], args, tmp_path / "srv.log")
    assert d["batch_size"] == 3 and d["context"] == 200
    assert len(d["times_s"]["4"]) == len(d["times_s"]["24"]) == 2
    assert d["tokens_per_s"] > 0 and d["ms_per_step"] > 0
    assert d["log_lines"] > 0 and d["log_gen_throughput_median"] > 0
    assert d["kv_pool_tokens"] > 0
    assert "--index-cache-pattern FSSSFSSS" in d["command"]
    prof = d["profile"]
    assert prof["steps"] == 3 and (tmp_path / "profiles" / prof["trace"]).is_file()
    assert prof["kernels"]["kernels"] == 0 and prof["kernels"]["host_ops"]


# ---- the agentic workload: SGLang's agentic-trace format, replayed by bench_serving ----------


def _load_with_sglang(path, sessions):
    """The trace as SGLang's own loader reads it (what bench_serving replays)."""
    from sglang.benchmark.datasets.agentic_trace import AgenticTraceDataset

    ds = AgenticTraceDataset(dataset_path=str(path), num_requests=sessions, fixed_output_len=8, offset=0, max_turns=None)
    return ds.load(tokenizer=None)


def test_trace_is_seeded_in_sglang_format_and_grows_as_specified(models, tmp_path):
    from transformers import AutoTokenizer

    from sglang_indexcache.bench import trace

    spec = trace.spec_for("smoke", 3, seed=7)
    meta = trace.write_trace(models["deepseek-tiny"], spec, tmp_path / "a.json")
    again = trace.write_trace(models["deepseek-tiny"], spec, tmp_path / "b.json")
    other = trace.write_trace(models["deepseek-tiny"], trace.spec_for("smoke", 3, seed=8), tmp_path / "c.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert meta["sha256"] == again["sha256"] != other["sha256"]

    rows = _load_with_sglang(tmp_path / "a.json", 3)
    assert [len(r.prompt) for r in rows] == meta["turns"] and min(meta["turns"]) >= 3
    data = json.loads((tmp_path / "a.json").read_text())
    tok = AutoTokenizer.from_pretrained(models["deepseek-tiny"])
    systems = {conv[0]["messages"][0]["content"] for conv in data["conversations"]}
    assert len(systems) == 1  # one system prompt + tool schema, shared by every session
    assert '"name": "run_tests"' in systems.pop()
    lo, hi = spec.tool_tokens
    for conv in data["conversations"]:
        contexts = [turn["prompt_tokens"] for turn in conv]
        assert contexts == sorted(contexts) and contexts[-1] <= spec.max_context
        assert abs(contexts[0] - spec.first_context) <= 0.1 * spec.first_context
        for turn in conv[1:]:
            (msg,) = turn["messages"]
            n = len(tok(msg["content"], add_special_tokens=False)["input_ids"])
            assert 0.9 * lo <= n <= 1.1 * hi + 8, n


def test_turns_pair_bench_serving_rounds_with_the_trace():
    from sglang_indexcache.bench import agentic

    trace = {"conversations": [[{}, {}, {}], [{}, {}]]}
    n = 5
    result = {"ttfts": [0.1 * (i + 1) for i in range(n)], "itls": [[0.01, 0.03]] * n, "input_lens": [100, 200, 300, 110, 220],
              "cached_tokens": [0, 96, 192, 64, 96], "output_lens": [8] * n, "errors": [""] * 4 + ["boom"]}
    rows = agentic.turns(result, trace, 2)
    assert [(r["session"], r["turn"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert rows[2]["context"] == 300 and rows[2]["cached"] == 192 and rows[4]["error"] == "boom"
    assert rows[0]["itl_median_s"] == pytest.approx(0.02)
    with pytest.raises(RuntimeError, match="returned 5 rounds, the trace has 3"):
        agentic.turns(result, trace, 1)
    summary = agentic.summarize({"duration": 2.0, "output_throughput": 20.0, "median_ttft_ms": 300, "p90_ttft_ms": 450,
                                 "median_itl_ms": 20, "p90_itl_ms": 30}, rows, 2)
    assert summary["failed_rounds"] == 1 and summary["rounds"] == 5
    assert summary["new_tokens_per_s"] == pytest.approx((100 + 104 + 108 + 46) / 2.0)


def test_server_side_time_stats_and_histograms_parse_as_sglang_prints_them():
    from sglang_indexcache.bench import agentic

    # lines as SGLang 0.5.23 logs them with --enable-request-time-stats-logging (CPU run, 2026-11-30)
    log = """\
[2026-11-30 09:30:19] ReqTimeStats(rid=HEALTH_CHECK_9f72, input_len=1, cached_input_len=0, output_len=1, attempts=0, type=unified): queue_duration=0.43ms, forward_duration=25.25ms, entry_time=1796031019.513
[2026-11-30 09:30:21] ReqTimeStats(rid=3810f1ad, input_len=490, cached_input_len=0, output_len=4, attempts=0, type=unified): queue_duration=0.47ms, forward_duration=678.15ms, entry_time=1796031020.517
[2026-11-30 09:30:21] ReqTimeStats(rid=aa240411, input_len=510, cached_input_len=448, output_len=4, attempts=0, type=unified): queue_duration=0.39ms, forward_duration=1.5s, entry_time=1796031021.203
"""
    st = common.time_stats(log)
    assert set(st) == {490, 510}  # health checks left out
    assert st[490] == (0, 4, pytest.approx(0.00047), pytest.approx(0.67815))
    assert st[510][3] == pytest.approx(1.5)
    metrics = ('sglang:time_to_first_token_seconds_sum{model_name="m"} 3.0\n'
               'sglang:time_to_first_token_seconds_count{model_name="m"} 2.0\n'
               'sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 1.0\n')
    before = agentic.histogram_sums("")
    after = agentic.histogram_sums(metrics)
    assert agentic.server_side(before, after) == {"time_to_first_token_mean_s": 1.5}


def test_agentic_ratios_are_speedups_over_dsa_and_native_sharing():
    def level(ttft_long, spm):
        return {"levels": {"1": {"ttft_long_median_s": ttft_long, "sessions_per_min": spm}}, "label": "x"}

    results = {"concurrency": [1], "configs": {"a": level(2.0, 1.0), "d": level(1.25, 1.5), "c": level(1.0, 1.6)}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_a"]["1"]["c"]["ttft_long_median_s"] == pytest.approx(2.0)
    assert r["over_a"]["1"]["c"]["sessions_per_min"] == pytest.approx(1.6)
    assert r["over_d"]["1"]["c"]["ttft_long_median_s"] == pytest.approx(1.25)


def test_repeated_replays_give_medians_their_spread_and_every_turn():
    """--repeats: a level replayed 3 times on one server reports each figure's median over the
    runs, its [min, max], every run's rows; the ratios get the worst and best pairing."""
    from sglang_indexcache.bench import agentic

    def run(ttft, spm, failed=0, bins=None):
        return {"command": "bench_serving ...", "sessions": 2, "rounds": 4, "failed_rounds": failed,
                "ttft_median_s": ttft, "ttft_p90_s": ttft * 3, "ttft_long_median_s": ttft * 2, "sessions_per_min": spm,
                "cache_hit_rate_pct": 90.0,
                "tpot_median_ms": None, "server": {"forward_median_s": ttft / 2, "turns_paired": 4},
                "ttft_by_context": bins or {"0": {"median_s": ttft, "p90_s": ttft * 3, "n": 4}},
                "turns": [{"session": 0, "turn": t, "ttft_s": ttft} for t in range(4)]}

    one = run(0.2, 3.0)
    assert agentic.combine_runs([one]) is one  # a single run is reported as it is
    level = agentic.combine_runs([run(0.3, 2.0), run(0.1, 4.0, failed=1), run(0.2, 3.5, bins={"16384": {
        "median_s": 0.5, "p90_s": 0.6, "n": 2}})])
    assert level["repeats"] == 3 and level["rounds"] == 4 and level["failed_rounds"] == 1
    assert level["ttft_median_s"] == pytest.approx(0.2) and level["sessions_per_min"] == pytest.approx(3.5)
    assert level["tpot_median_ms"] is None  # absent in every run stays absent
    assert level["server"] == {"forward_median_s": pytest.approx(0.1), "turns_paired": 4}
    assert level["ttft_by_context"]["0"] == {"median_s": pytest.approx(0.2), "p90_s": pytest.approx(0.6), "n": 8}
    assert level["ttft_by_context"]["16384"]["n"] == 2  # a bin only one run reached
    assert level["spread"]["ttft_median_s"] == pytest.approx([0.1, 0.3])
    assert level["spread"]["sessions_per_min"] == pytest.approx([2.0, 4.0])
    assert len(level["turns"]) == 12 and {r["run"] for r in level["turns"]} == {0, 1, 2}
    assert [r["ttft_median_s"] for r in level["runs"]] == [0.3, 0.1, 0.2]

    d = agentic.combine_runs([run(0.4, 2.0), run(0.2, 2.5)])
    results = {"concurrency": [1], "configs": {"c": {"label": "c", "levels": {"1": level}},
                                               "d": {"label": "d", "levels": {"1": d}}}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_d"]["1"]["c"]["ttft_median_s"] == pytest.approx(0.3 / 0.2)  # medians: d 0.3, c 0.2
    lo, hi = r["over_d_range"]["1"]["c"]["ttft_median_s"]
    assert (lo, hi) == (pytest.approx(0.2 / 0.3), pytest.approx(0.4 / 0.1))  # time: theirs / ours
    lo, hi = r["over_d_range"]["1"]["c"]["sessions_per_min"]
    assert (lo, hi) == (pytest.approx(2.0 / 2.5), pytest.approx(4.0 / 2.0))  # rate: ours / theirs
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "medians over repeated runs" in table and "[0.667, 4.000]" in table


@pytest.mark.engine
def test_agentic_pipeline_on_cpu(models, tmp_path):
    """The whole pipeline on a CPU server: trace, SGLang's bench_serving multi-turn replay at
    two concurrencies, twice each (--repeats 2), per-turn rows, table and plot. Every later turn
    hits the radix cache for the history bench_serving sent before (its prompt and the server's
    reply); each replay starts from a flushed cache."""
    from sglang_indexcache.bench import agentic

    args = argparse.Namespace(
        out=str(tmp_path), shape=None, model_path=models["deepseek-tiny"], configs=["c"], pattern="FSSFSS",
        low=None, searched=None, concurrency=[1, 2], min_sessions=2, trace=None, size="smoke", seed=0, mtp=False,
        mem_fraction=None, chunked_prefill_size=512, device="cpu", timeout=900, paged_rows=128, repeats=2,
    )
    assert agentic.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    cfg = results["configs"]["c"]
    assert "--index-cache-pattern FSSFSS" in cfg["server_command"]
    probe = cfg["probe"]  # one long turn through three doors: chat, text, token ids
    assert probe["context"] >= results["trace"]["last_prompt_tokens"][0] - 200
    assert all(probe[k] > 0 for k in ("cold_chat_s", "chat_s", "text_s", "ids_s"))
    for level in ("1", "2"):
        s = cfg["levels"][level]
        assert "sglang.benchmark.serving" in s["command"] and f"--max-concurrency {level}" in s["command"]
        assert s["failed_rounds"] == 0 and s["sessions"] == 2
        assert s["rounds"] == sum(results["trace"]["turns"][:2])
        assert s["repeats"] == 2 and len(s["runs"]) == 2 and len(s["turns"]) == 2 * s["rounds"]
        assert all((tmp_path / f"c-c{level}-r{i}.jsonl").exists() for i in (0, 1))
        assert all(r["output_tokens"] == 8 for r in s["turns"])
        by_session = {}
        for r in s["turns"]:
            by_session.setdefault((r["run"], r["session"]), []).append(r)
        for run in (0, 1):  # each replay starts from a flushed cache (later sessions share the system prompt)
            assert min(rows[0]["cached"] for (r, _), rows in by_session.items() if r == run) < 64
        for rows in by_session.values():
            for prev, cur in zip(rows, rows[1:]):
                assert cur["context"] > prev["context"] + prev["output_tokens"]
                assert cur["cached"] >= prev["context"] - 64, (prev, cur)  # whole pages of the history
        assert s["cache_hit_rate_pct"] > 50
        # the server's own view, paired with bench_serving's rounds
        assert s["server"]["turns_paired"] == s["rounds"], s["server"]
        assert 0 < s["server"]["time_to_first_token_mean_s"] and s["server"]["forward_median_s"] > 0
        assert s["tpot_median_ms"] > 0
    agentic_report.agentic_plot({**results, "ratios": agentic_report.agentic_ratios(results)}, tmp_path / "agentic.png")
    assert (tmp_path / "agentic.png").stat().st_size > 10_000


def test_shape_tokenizer_round_trips_every_model_id(tmp_path):
    """A dummy model at a real shape emits ids past the 1024-token BPE: each must decode to
    text that encodes back to itself, or replies sent back by bench_serving change length."""
    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import VOCAB_SIZE, build_tokenizer

    build_tokenizer(tmp_path, cover=VOCAB_SIZE + 512)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == VOCAB_SIZE + 512 and tok.vocab_size == VOCAB_SIZE
    ids = [VOCAB_SIZE + 511, 300, VOCAB_SIZE, 77, VOCAB_SIZE + 17]
    assert tok(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids


def test_turn_profile_kernel_table_counts_busy_time_and_gaps():
    """The turn profile's summary of a torch-profiler chrome trace: per-kernel totals, the
    union of kernel intervals (overlapping streams counted once), and idle gaps; the host's
    operators by total time."""
    from sglang_indexcache.bench import profile

    ev = [
        {"ph": "X", "cat": "kernel", "name": "void deep_gemm::sm90_fp8_mqa_logits<...>", "ts": 100, "dur": 50},
        {"ph": "X", "cat": "kernel", "name": "fast_topk_transform_kernel", "ts": 160, "dur": 10},
        {"ph": "X", "cat": "kernel", "name": "void deep_gemm::sm90_fp8_mqa_logits<...>", "ts": 165, "dur": 20},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 1000},  # host: not a kernel
        {"ph": "X", "cat": "kernel", "name": "flash_fwd_splitkv_mla_fp8_sparse_kernel", "ts": 300, "dur": 40},
    ]
    t = profile.kernel_table({"traceEvents": ev})
    assert t["kernels"] == 4
    assert t["span_us"] == 240  # 100 .. 340
    assert t["busy_us"] == 50 + 10 + 15 + 40  # 165..185 overlaps 160..170 by 5
    assert t["gap_us"] == 10 + 115  # 150..160 and 185..300
    assert t["families"]["indexer logits"] == {"us": 70, "calls": 2}
    assert t["families"]["top-k"]["calls"] == 1
    assert t["families"]["sparse attention"]["us"] == 40
    assert list(t["by_kernel"])[0].startswith("void deep_gemm::sm90_fp8_mqa_logits")
    assert profile.kernel_table({"traceEvents": ev[3:4]}) == {"kernels": 0}
    host = profile.host_table({"traceEvents": ev + [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 5, "dur": 3},
                                                     {"ph": "X", "cat": "cpu_op", "name": "aten::add", "ts": 9, "dur": 7}]})
    assert host == {"aten::mm": {"us": 1003, "calls": 2}, "aten::add": {"us": 7, "calls": 1}}


def test_padded_tokenizer_turns_sglangs_parallel_prompt_encoder_off(tmp_path):
    """A shape tokenizer padded with ~150K added tokens (not a real checkpoint's) makes
    SGLang's parallel prompt encoder slow (bench/common.tokenizer_env); the benchmark turns it
    off for such a tokenizer only."""
    padded, real = tmp_path / "padded", tmp_path / "real"
    for folder, n in ((padded, common.PADDED_TOKENIZER_ADDED + 1), (real, 300)):
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps(
            {"added_tokens": [{"id": i, "content": f"<t{i}>"} for i in range(n)]}))
    assert common.tokenizer_env(padded) == {"SGLANG_PARALLEL_PROMPT_ENCODE": "0"}
    assert common.tokenizer_env(real) == {}
    assert common.tokenizer_env(tmp_path) == {}  # no tokenizer.json: SGLang's default


def test_the_benchmarks_own_environment_is_recorded_as_its_servers(monkeypatch):
    """A server inherits the benchmark's environment (SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit
    is given so): the results record what of SERVER_ENV_KEYS it passed on."""
    monkeypatch.setenv("SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS", "unit")
    monkeypatch.delenv("SGLANG_PARALLEL_PROMPT_ENCODE", raising=False)
    monkeypatch.delenv("SGLANG_DSA_PREFILL_DENSE_ATTN_KV_LEN_THRESHOLD", raising=False)
    assert common.inherited_env() == {"SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS": "unit"}
    monkeypatch.delenv("SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS")
    assert common.inherited_env() == {}


def test_turn_profile_pipeline_on_cpu(models, tmp_path):
    """`bench turn` on a CPU server: the prefix hits the radix cache on every timed turn (the
    new tokens do not), the server's forward time is read, and SGLang's /start_profile and
    /stop_profile leave one trace per turn size (CPU activity only: no kernels to count)."""
    from sglang_indexcache.bench import turn

    args = argparse.Namespace(
        out=str(tmp_path), shape="flash-12", model_path=models["deepseek-tiny"], configs=["c"], pattern="FSSFSS",
        context=512, new=[1, 64], repeats=2, seed=0, mem_fraction=None, chunked_prefill_size=512,
        timeout=900, device="cpu", server_args="--max-running-requests 4", server_env=["SGLANG_DSA_FUSE_TOPK=0"],
        paged_rows=8192,
    )
    assert turn.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    entry = results["configs"]["c"]
    assert entry["full_layers"] == 2 and "--index-cache-pattern FSSFSS" in entry["server_command"]
    assert "--max-running-requests 4" in entry["server_command"]  # --server-args reach every server
    assert entry["server_env"]["SGLANG_DSA_FUSE_TOPK"] == "0"  # and --server-env, recorded
    cfg = json.loads((Path(models["deepseek-tiny"]) / "config.json").read_text())
    assert results["indexer"] == {"heads": cfg["index_n_heads"], "head_dim": cfg["index_head_dim"],
                                  "topk": cfg["index_topk"]}  # recorded for the roofline
    assert results["roofline"] == []  # a CPU profile has no GPU kernels to set against a ceiling
    for n in ("1", "64"):
        t = entry["turns"][n]
        assert len(t["wall_s"]) == 2 and all(c == 512 for c in t["cached_tokens"]), t["cached_tokens"]
        assert t["forward_median_ms"] > 0
        assert t["profile"] and (tmp_path / "profiles" / t["profile"]).exists()
    assert "c" in report.turn_table(results)
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        turn.run(argparse.Namespace(**{**vars(args), "server_env": ["NOEQUALS"]}))
    with pytest.raises(SystemExit, match="the v2 top-k kernel need CUDA"):  # k, m: not on CPU
        turn.run(argparse.Namespace(**{**vars(args), "configs": ["m"]}))


def test_pp_bench_measures_the_boundary_on_cpu(models, tmp_path):
    """`bench pp` on CPU (gloo, deepseek-tiny, FSSSFS, PP 2 split 3|3: stage 1 starts on the
    Shared layer 3) under transfer. The probe in each scheduler process counts what stage 0
    really sends for a 300-token prompt (prefilled in chunks of 128, so three messages): the
    hidden states and the residual (300 x hidden 64, float32) and the top-k (300 x index_topk
    32, int32); each stage's forward time is counted for the request. (Recompute sends no
    top-k: the same run with --configs c-recompute, in the issue's closing note.)"""
    from sglang_indexcache.bench import pp

    args = argparse.Namespace(
        out=str(tmp_path), shape="flash-12", model_path=models["deepseek-tiny"], configs=["c-transfer"],
        pattern="FSSSFS", pp_size=2, lengths=[300], repeats=1, decode_batch=0, decode_len=0, decode_steps=0,
        decode_short=0, decode_repeats=0, mem_fraction=None, chunked_prefill_size=128, seed=0, device="cpu", timeout=600)
    assert pp.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    e = results["configs"]["c-transfer"]["lengths"]["300"]
    assert e["boundary_bytes"] == {"hidden_states": 300 * 64 * 4, "residual": 300 * 64 * 4, "topk_indices": 300 * 32 * 4}
    assert all(ms > 0 for ms in e["stage_ms_median"]) and e["wall_median_s"] > 0
    assert "pipeline handoff=transfer" in " ".join(results["configs"]["c-transfer"]["schedule"])
    assert "c-transfer" in report.pp_table(results)


def test_roofline_counts_the_least_work_of_a_full_layers_indexer_kernels():
    """Issue 20's first table: per Full layer, what the logits and top-k kernels must compute and
    move at the least, and how far the profiled time is from that floor. Hand-counted: a turn of
    n = 2 new tokens on C = 3 cached, 1 index head of dim 2, top-k 1: query 0 sees 4 keys and
    query 1 sees 5, so 9 (query, key) pairs of 2 x 1 x 2 flops; the [2, 5] f32 logits are 40
    bytes; the keys 5 x (2 fp8 + 4 scale), the queries 2 x 1 x 2 fp8 and the head weights
    2 x 1 f32 are read once."""
    from sglang_indexcache.bench.roofline import roofline, work

    w = work(2, 3, {"heads": 1, "head_dim": 2, "topk": 1})
    assert w["indexer logits"] == {"flops": 36, "bytes": 30 + 4 + 8 + 40}
    assert w["top-k"] == {"flops": 0, "bytes": 40 + 8}
    # 1 ms per Full layer of each, on a machine of 36e-9 TFLOP/s (36 flop/ms) and 41e-9 TB/s:
    # the logits' floor is max(36 / 36, 82 / 41) = 2 ms, the top-k's 48 / 41 ms
    results = {"context": 3, "indexer": {"heads": 1, "head_dim": 2, "topk": 1},
               "configs": {"a": {"full_layers": 2, "turns": {"2": {"kernels": {"families": {
                   "indexer logits": {"us": 2000.0}, "top-k": {"us": 2000.0}, "MoE": {"us": 5.0}}}}}}}}
    rows = {r["kernel"]: r for r in roofline(results, {"name": "toy", "fp8_tflops": 36e-9, "hbm_tbps": 41e-9})}
    assert set(rows) == {"indexer logits", "top-k"}  # only the indexer's kernels
    assert rows["indexer logits"]["ms_per_full_layer"] == pytest.approx(1.0)
    assert rows["indexer logits"]["floor_ms"] == pytest.approx(2.0)
    assert rows["indexer logits"]["x_floor"] == pytest.approx(0.5)
    assert rows["top-k"]["floor_ms"] == pytest.approx(48 / 41)
    assert rows["top-k"]["gflop"] == 0 and rows["top-k"]["tbps"] == pytest.approx(48 / 1e9)


def test_roofline_of_the_committed_h200_turn_profile():
    """The session-4 turn profile (no indexer dimensions recorded then: taken from its shape)."""
    from sglang_indexcache.bench.roofline import indexer_dims, roofline, roofline_table

    root = Path(__file__).resolve().parent.parent
    results = json.loads((root / "benchmarks/results/h200x2-2026-11-30-session4/turn-flash12.json").read_text())
    assert indexer_dims(results) == {"heads": 32, "head_dim": 128, "topk": 2048}
    rows = roofline(results)
    assert {(r["config"], r["new"]) for r in rows} == {(k, n) for k in "acg" for n in (1, 2048, 8192)}
    assert "x floor" in roofline_table(results)


def test_evaluations_for_counts_what_greedy_search_computes():
    """The projection of `bench search` counts the losses the greedy search really computes."""
    from sglang_indexcache.tools.search import evaluations_for, greedy_search

    class Fake:
        key, name = None, "fake"

        def __init__(self, n):
            self.all_full = "F" * n

        def loss(self, pattern):  # Shared late layers cost less: a deterministic order
            return sum(i for i, c in enumerate(pattern) if c == "S") / 100

    for n, target in ((12, 0.25), (8, 0.5), (12, 2)):
        assert greedy_search(Fake(n), (target,), progress=False)["evaluations"] == evaluations_for(n, target)
    assert evaluations_for(78, 0.25) == 1 + sum(range(20, 78))  # the search issue's 77 + 76 + ... + 20, and the baseline


@pytest.mark.engine
def test_bench_search_on_cpu(models, tmp_path):
    """`bench search` on CPU servers of a tiny model: one switchable server scores the first
    candidates, then a server per candidate scores the first of them again; both are timed,
    the whole search is projected, and the pattern scored by both gives the same loss."""
    from sglang_indexcache.bench.__main__ import main

    assert main(["search", "--out", str(tmp_path), "--device", "cpu", "--model-path", models["deepseek-tiny"],
                 "--calib-tokens", "256", "--seq-len", "128", "--candidates", "2", "--restarts", "1"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["workload"] == "search" and res["layers"] == 6
    assert res["calibration"] == {"sequences": 2, "seq_len": 128, "tokens": 256}
    s, r = res["switching"], res["restart"]
    assert list(s["losses"]) == ["FSFFFF", "FFSFFF"] and list(r["losses"]) == ["FSFFFF"]
    assert len(s["s_per_eval"]) == 2 and s["startup_s"] > 0 and len(r["s_per_eval"]) == 1
    assert res["search_evaluations"] == 1 + 5 + 4 + 3 + 2  # 6 layers to 1/4 (2 Full), layer 0 fixed
    assert s["projected_search_hours"] == pytest.approx((s["startup_s"] + 15 * s["s_per_eval_median"]) / 3600)
    assert res["loss_differences"]["FSFFFF"] < 1e-4  # batched on one server vs one by one on a fresh one
    assert (tmp_path / "search.png").stat().st_size > 0
    assert main(["report", str(tmp_path / "results.json")]) == 0
    with pytest.raises(SystemExit, match="--restarts must be between 1 and --candidates"):
        main(["search", "--out", str(tmp_path), "--device", "cpu", "--model-path", models["deepseek-tiny"],
              "--calib-tokens", "256", "--seq-len", "128", "--candidates", "2", "--restarts", "3"])
