"""The agentic workload (`bench/trace.py`, `bench/agentic.py`, `bench/agentic_report.py`) on CPU.

The trace generator (seeded, SGLang's format), the pairing of bench_serving's rounds with the
trace, the server-side figures as SGLang prints them, the ratios over (a), (d) and (c), repeated
replays, and the whole pipeline against a CPU server on the tiny model."""

from __future__ import annotations

import argparse
import json

import pytest

from sglang_indexcache.bench import agentic_report, common


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
    # the indexcache backend's counter (backend/metrics.py), summed over ranks, as a delta
    calls = ('sglang:indexcache_indexer_layer_calls_total{forward_mode="EXTEND",model_name="m",outcome="run",'
             'pp_rank="0",tp_rank="0"} 12.0\n'
             'sglang:indexcache_indexer_layer_calls_total{forward_mode="EXTEND",model_name="m",outcome="run",'
             'pp_rank="0",tp_rank="1"} 12.0\n'
             'sglang:indexcache_indexer_layer_calls_created{forward_mode="EXTEND",model_name="m",outcome="run",'
             'pp_rank="0",tp_rank="0"} 1.7e9\n'
             'sglang:indexcache_indexer_layer_calls_total{forward_mode="DECODE",model_name="m",outcome="skipped",'
             'pp_rank="0",tp_rank="0"} 30.0\n')
    assert agentic.indexer_calls(calls) == {"EXTEND:run": 24.0, "DECODE:skipped": 30.0}
    before = {**before, "calls": {"EXTEND:run": 4.0}}
    after = {**after, "calls": agentic.indexer_calls(calls)}
    assert agentic.server_side(before, after)["indexer_layer_calls"] == {"EXTEND:run": 20.0, "DECODE:skipped": 30.0}
    assert "indexer_layer_calls" not in agentic.server_side({**before, "calls": {}}, {**after, "calls": {}})  # dsa


class _ProbeServer:
    """Stands in for `server.Server` in the probe: each request appends SGLang's ReqTimeStats line
    (forward time `fwd_ms[i]` for the i-th) to its log; the profiler writes a one-kernel trace."""

    def __init__(self, log, fwd_ms):
        self.log, self.fwd_ms, self.calls, self.prof = log, list(fwd_ms), [], None
        log.write_text("[2026-12-03 16:55:00] server started\n")

    def post(self, path, body, timeout=None):
        import gzip

        self.calls.append(path)
        if path == "/start_profile":
            self.prof = body
        elif path == "/stop_profile":
            trace = {"traceEvents": [{"ph": "X", "cat": "kernel", "name": "fp8_paged_mqa_logits", "ts": 0, "dur": 40},
                                     {"ph": "X", "cat": "kernel", "name": "topk_v2", "ts": 100, "dur": 10}]}
            out = f"{self.prof['output_dir']}/{self.prof['profile_prefix']}-1.trace.json.gz"
            with gzip.open(out, "wt") as fh:
                json.dump(trace, fh)
        elif self.log is not None:
            n = len(self.fwd_ms) and self.fwd_ms.pop(0)
            with open(self.log, "a") as fh:
                fh.write(f"[2026-12-03 16:55:01] ReqTimeStats(rid=r{len(self.calls)}, input_len=124562, cached_input_len="
                         f"124544, output_len=1, attempts=0, type=unified): queue_duration=1.00ms, "
                         f"forward_duration={n}ms, entry_time=1796316933.195\n")
        return {}


def test_the_probe_splits_each_door_into_the_servers_forward_and_profiles_on_request(tmp_path):
    """`turn_probe` reads the server's forward time of each of its requests from the log, in the
    order sent (cold chat, then chat, text, ids three times), gives the medians per door, refuses to
    pair a log that does not hold one line per request, and with `profile_dir` records one more
    token-id request under the profiler; the report prints each server's probe."""
    from sglang_indexcache.bench.probe import forward_by_door, turn_probe

    fwd = [11000, 80, 60, 50, 82, 81, 84, 81, 86, 80]
    srv = _ProbeServer(tmp_path / "server.log", fwd)
    out = turn_probe(srv, tmp_path, ([], "text", [1] * 124562), settle_s=0, profile_dir=tmp_path / "prof")
    assert out["forward_s"] == pytest.approx({"cold_chat_s": 11.0, "chat_s": 0.081, "text_s": 0.081, "ids_s": 0.080})
    assert out["forward_all_s"]["text_s"] == pytest.approx([0.06, 0.081, 0.086])
    assert srv.calls[-3:] == ["/start_profile", "/generate", "/stop_profile"]  # a token-id request, profiled
    assert srv.prof["activities"] == ["CPU", "GPU"] and out["profile"]["trace"] == "probe-1.trace.json.gz"
    assert (out["profile"]["busy_us"], out["profile"]["span_us"]) == (50, 110)
    # a log that lost or gained a line (a health check is not one) is not paired
    assert forward_by_door("", ["chat_s"]) == {"forward_s": None, "forward_all_s": None}
    lines = (tmp_path / "server.log").read_text()
    assert forward_by_door(lines, ["x"] * 10)["forward_s"] is None  # 11 lines (the profiled one), 10 sent
    health = "ReqTimeStats(rid=HEALTH_CHECK_1, input_len=1, cached_input_len=0, output_len=1, attempts=0, " \
             "type=unified): queue_duration=0.4ms, forward_duration=25ms, entry_time=1\n"
    assert forward_by_door(health + lines.splitlines(True)[2], ["ids_s"])["forward_s"] == {"ids_s": pytest.approx(0.08)}
    # without a log (a server object without one), the client's times only
    bare = _ProbeServer(tmp_path / "other.log", fwd)
    bare.log = None
    assert "forward_s" not in turn_probe(bare, tmp_path, ([], "text", [1, 2]), settle_s=0)
    entry = {"probe": out}
    line = agentic_report.probe_lines({"c": entry})[0]
    assert "(0.081)" in line and "ids " in line and "GPU busy 0.1 ms of span 0.1 ms" in line
    two = agentic_report.probe_lines({"d": {"per_server": [{"probe": out}, {"probe": {"context": 9, "ids_s": 0.1}}]}})
    assert [x.split(" at ")[0] for x in two] == ["  probe d0", "  probe d1"] and two[1].endswith("ids 0.100")


def test_agentic_ratios_are_speedups_over_dsa_and_native_sharing():
    def level(ttft_long, spm):
        return {"levels": {"1": {"ttft_long_median_s": ttft_long, "sessions_per_min": spm}}, "label": "x"}

    results = {"concurrency": [1], "configs": {"a": level(2.0, 1.0), "d": level(1.25, 1.5), "c": level(1.0, 1.6)}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_a"]["1"]["c"]["ttft_long_median_s"] == pytest.approx(2.0)
    assert r["over_a"]["1"]["c"]["sessions_per_min"] == pytest.approx(1.6)
    assert r["over_d"]["1"]["c"]["ttft_long_median_s"] == pytest.approx(1.25)


def test_levels_of_other_sessions_are_not_divided_only_paired(tmp_path):
    """Session 21 merged (e), one session, into a file where (a) replayed two: its >= 96K median
    was over session 0's turns, (a)'s over both sessions', and the first report divided them
    (1.83 where turn for turn gave 1.80). Such levels give turn-for-turn ratios only."""
    def rows(session, ttfts):
        return [{"session": session, "turn": t, "context": 100000, "ttft_s": x, "error": None} for t, x in enumerate(ttfts)]

    a_rows = rows(0, [1.0, 1.0]) + rows(1, [4.0, 4.0])
    results = {"concurrency": [1], "configs": {
        "a": {"label": "a", "levels": {"1": {"sessions": 2, "ttft_median_s": 2.5, "ttft_p90_s": 4.0,
                                             "ttft_long_median_s": 2.5, "sessions_per_min": 1.0, "turns": a_rows}}},
        "e": {"label": "e", "levels": {"1": {"sessions": 1, "ttft_median_s": 0.5, "ttft_p90_s": 0.5,
                                             "ttft_long_median_s": 0.5, "sessions_per_min": 3.0,
                                             "turns": rows(0, [0.5, 0.5])}}},
        "m": {"label": "m", "levels": {"1": {"sessions": 2, "ttft_median_s": 1.25, "ttft_p90_s": 2.0,
                                             "ttft_long_median_s": 1.25, "sessions_per_min": 2.0,
                                             "turns": rows(0, [0.5, 0.5]) + rows(1, [2.0, 2.0])}}}}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_a"]["1"]["e"] == {} and r["sessions_over_a"]["1"] == {"e": [1, 2]}
    assert r["paired_over_a"]["1"]["e"]["median_long"] == pytest.approx(2.0)  # session 0's turns only
    assert r["over_a"]["1"]["m"]["ttft_long_median_s"] == pytest.approx(2.0)  # same sessions: divided
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "e over a: not divided, 1 session(s) against 2 (other turns); turn for turn:" in table
    assert "e over a, turn for turn: median 2.000 (2 turns), >=96K 2.000 (2)" in table
    assert "m over a: ttft_long_median_s 2.000" in table
    for entry in results["configs"].values():  # the plot draws (e)'s bar from its turn-for-turn ratio
        entry["levels"]["1"]["ttft_by_context"] = {"98304": {"median_s": 1.0, "p90_s": 1.5, "n": 2}}
    agentic_report.agentic_plot({**results, "ratios": r}, tmp_path / "mixed.png")
    assert (tmp_path / "mixed.png").stat().st_size > 10_000


def test_turn_for_turn_ratios_pair_the_same_turn_of_the_same_session():
    """Each turn's TTFT against the same turn on the reference's server (medians over repeated
    runs), >= 96K turns apart; a turn whose context differs between the servers is not paired."""
    def rows(ttfts, run=None, contexts=(8000, 60000, 100000, 120000)):
        out = [{"session": 0, "turn": t, "context": c, "ttft_s": x, "error": None}
               for t, (c, x) in enumerate(zip(contexts, ttfts))]
        return [{**r, "run": run} for r in out] if run is not None else out

    a = rows([0.2, 0.4, 0.8, 1.0])
    c = rows([0.1, 0.4, 0.4, 0.9], run=0) + rows([0.3, 0.4, 0.2, 1.1], run=1)  # medians 0.2 0.4 0.3 1.0
    p = agentic_report.paired_turns(a, c)
    assert p["turns"] == 4 and p["unpaired"] == 0 and p["long_turns"] == 2
    assert p["median"] == pytest.approx(1.0)  # ratios 1, 1, 8/3, 1
    assert p["median_long"] == pytest.approx((0.8 / 0.3 + 1.0) / 2)
    assert p["total"] == pytest.approx(2.4 / 1.9)
    other = rows([0.2, 0.4, 0.8, 1.0], contexts=(8000, 60000, 100000, 125000))  # a longer reply before it
    assert agentic_report.paired_turns(a, other)["unpaired"] == 1
    failed = [{**r, "error": "timeout"} if r["turn"] == 3 else r for r in a]
    assert agentic_report.paired_turns(failed, a)["turns"] == 3
    assert agentic_report.paired_turns(a, []) == {}

    results = {"concurrency": [1], "configs": {
        "a": {"label": "a", "levels": {"1": {"ttft_median_s": 0.6, "ttft_p90_s": 1.0, "sessions_per_min": 1.0, "turns": a}}},
        "c": {"label": "c", "levels": {"1": {"ttft_median_s": 0.35, "ttft_p90_s": 0.9, "sessions_per_min": 1.2,
                                             "turns": c}}}}}
    r = agentic_report.agentic_ratios(results)
    assert r["paired_over_a"]["1"]["c"]["median"] == pytest.approx(1.0)
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "c over a, turn for turn: median 1.000 (4 turns), >=96K 1.833 (2), total TTFT 1.263" in table


def test_the_control_config_is_offered_and_refused_on_cpu(models, tmp_path):
    """(i), dsa with the pattern as indexer_types (the model config indexcache installs, without
    its backend), is a configuration of the agentic bench; upstream dsa needs CUDA."""
    from sglang_indexcache.bench.__main__ import main

    with pytest.raises(SystemExit, match="--device cpu runs only indexcache configurations"):
        main(["agentic", "--out", str(tmp_path), "--device", "cpu", "--model-path", models["deepseek-tiny"],
              "--pattern", "FSSFSS", "--configs", "c", "i"])


@pytest.mark.parametrize("flag", ["--servers", "--repeats"])
def test_no_servers_or_no_repeats_is_refused_before_any_work(flag, models, tmp_path):
    from sglang_indexcache.bench.__main__ import main

    with pytest.raises(SystemExit, match="--repeats and --servers must be at least 1"):
        main(["agentic", "--out", str(tmp_path / "out"), "--device", "cpu", "--model-path", models["deepseek-tiny"],
              "--pattern", "FSSFSS", "--configs", "c", flag, "0"])
    assert not (tmp_path / "out").exists()


def test_the_servers_decode_rate_is_read_from_its_log():
    from sglang_indexcache.bench.decode import decode_log_lines

    # lines as SGLang 0.5.23 logged them on an H200 (session 18, c-server.log)
    log = """\
[2026-12-02 06:58:44] Decode batch, #running-req: 1, #token: 90496, token usage: 0.02, cuda graph: True, gen throughput (token/s): 128.06, #queue-req: 0
[2026-12-02 06:58:44] Prefill batch, #new-seq: 1, #new-token: 2304, #cached-token: 90432, token usage: 0.02, #running-req: 0, #queue-req: 0
[2026-12-02 06:58:44] Decode batch, #running-req: 16, #token: 90560, token usage: 0.02, cuda graph: True, gen throughput (token/s): 383.97, #queue-req: 0
"""
    assert decode_log_lines(log, 1) == {"lines": 1, "graph_lines": 1, "gen_throughput": [128.06]}
    assert decode_log_lines(log, 16)["gen_throughput"] == [383.97]
    assert decode_log_lines("", 1)["lines"] == 0


def test_servers_keep_sglangs_prefill_graphs_unless_asked_and_long_patterns_are_shortened():
    """`--prefill-graphs sglang` (the default) leaves SGLang's own prefill CUDA graphs on, as a
    user's launch line has them; `off` gives the eager extends of the runs up to session 15. A
    78-layer pattern is written as its head and count in the table and the legend."""
    from sglang_indexcache.bench import agentic

    meta = {"spec": {"max_context": 131072}}

    def flags(**kw):
        ns = argparse.Namespace(**{"concurrency": [1, 16], "chunked_prefill_size": 16384, "mem_fraction": None,
                                   "device": "cuda", "mtp": False, "prefill_graphs": "sglang", **kw})
        return agentic.server_args(["--model-path", "M"], ["--attention-backend", "dsa"], ns, meta)

    on, off, cpu = flags(), flags(prefill_graphs="off"), flags(device="cpu", prefill_graphs="off")
    assert "--cuda-graph-backend-prefill" not in on and on[on.index("--cuda-graph-max-bs-decode") + 1] == "16"
    assert off[off.index("--cuda-graph-backend-prefill") + 1] == "disabled"
    assert not any(a.startswith("--cuda-graph") for a in cpu)
    declared = "FFF" + "SSSF" * 18 + "SSS"
    assert agentic_report.short_label(f"indexcache, {declared}") == "indexcache, FFFSSS... (21 of 78 Full)"
    assert agentic_report.short_label("indexcache, FSSSFSSSFSSS") == "indexcache, FSSSFSSSFSSS"
    assert agentic_report.short_label("dsa, all Full") == "dsa, all Full"


def test_a_results_file_gathered_from_several_invocations_reports_every_level():
    """Session 14 ran one config per device call into one results file: (c) and (p) at
    concurrency 1 and 16, then (a) at 16 alone. The report covers both levels (the last call's
    `concurrency` was [16]), (p) is also given over (c), its before, and (a) is not, and the
    kernel variables each server had are listed."""
    def cfg(levels, env=None):
        return {"label": "x", "server_env": env or {},
                "levels": {lv: {"ttft_median_s": t, "ttft_p90_s": t, "ttft_long_median_s": t, "sessions_per_min": 1 / t}
                           for lv, t in levels.items()}}

    results = {"concurrency": [16], "configs": {
        "c": cfg({"1": 0.2, "16": 0.8}, {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": "0"}),
        "p": cfg({"1": 0.25, "16": 0.4}, {"SGLANG_INDEXCACHE_TOPK": "v2", "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": "128"}),
        "a": cfg({"16": 1.6})}}
    assert agentic_report.levels(results) == ["1", "16"]
    r = agentic_report.agentic_ratios(results)
    assert set(r["over_a"]) == {"16"} and set(r["over_a"]["16"]) == {"c", "p"}
    assert r["over_a"]["16"]["p"]["ttft_median_s"] == pytest.approx(4.0)
    assert r["over_c"]["1"]["p"]["ttft_median_s"] == pytest.approx(0.8)  # slower than its before
    assert set(r["over_c"]["16"]) == {"p"}  # (a) is the baseline, not an after of (c)
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "concurrency 1:" in table and "concurrency 16:" in table and "p over c: " in table
    assert "kernels: a defaults; c SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0; p SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=128 " \
           "SGLANG_INDEXCACHE_TOPK=v2" in table
    # since session 21 a run records what "defaults" meant (v2 became the default top-k then, v2-paged in 26)
    table = agentic_report.agentic_table({**results, "ratios": r, "kernel_defaults": common.kernel_defaults()})
    assert table.endswith("(defaults: SGLANG_INDEXCACHE_TOPK=v2-paged SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=128)")


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
    counted = [run(0.2, 3.0), run(0.2, 3.0)]
    counted[0]["server"]["indexer_layer_calls"] = {"EXTEND:run": 3.0}
    counted[1]["server"]["indexer_layer_calls"] = {"EXTEND:run": 5.0, "DECODE:run": 1.0}
    assert agentic.combine_runs(counted)["server"]["indexer_layer_calls"] == {"DECODE:run": 1.0, "EXTEND:run": 8.0}
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


def test_a_config_on_several_servers_gets_medians_over_all_their_runs():
    """--servers: the n-th server of every config runs before any config's next; merged, a
    level's figures are medians over every run on every server, each run names its server, each
    server keeps its command and start time, and the raw runs are not written out."""
    from sglang_indexcache.bench import agentic

    def run(ttft, tpot):
        return {"command": "bench_serving ...", "sessions": 2, "rounds": 2, "failed_rounds": 0, "ttft_median_s": ttft,
                "ttft_p90_s": ttft, "ttft_long_median_s": None, "sessions_per_min": 1.0, "cache_hit_rate_pct": 90.0,
                "tpot_median_ms": tpot, "server": {"decode_tokens_per_s_median": 1000 / tpot},
                "ttft_by_context": {"0": {"median_s": ttft, "p90_s": ttft, "n": 2}},
                "turns": [{"session": 0, "turn": t, "ttft_s": ttft} for t in range(2)]}

    def entry(port, runs):
        return {"label": "c", "server_command": f"launch --port {port}", "startup_s": 20.0, "kv_pool_tokens": 9,
                "probe": {"ids_s": 0.1}, "levels": {"1": agentic.combine_runs(runs)}, "_runs": {"1": runs}}

    one = entry(1, [run(0.2, 2.0)])
    assert agentic.merge_servers([one]) == {k: v for k, v in one.items() if k != "_runs"}
    merged = agentic.merge_servers([one, entry(2, [run(0.4, 3.0), run(0.3, 3.2)]), entry(3, [run(0.1, 2.1)])])
    assert "_runs" not in merged
    level = merged["levels"]["1"]
    assert level["run_servers"] == [0, 1, 1, 2] and level["repeats"] == 4
    assert level["ttft_median_s"] == pytest.approx(0.25) and level["tpot_median_ms"] == pytest.approx(2.55)
    assert level["spread"]["tpot_median_ms"] == pytest.approx([2.0, 3.2])
    assert [r["server"]["decode_tokens_per_s_median"] for r in level["runs"]] == pytest.approx([500, 1000 / 3, 312.5, 1000 / 2.1])
    assert [s["server_command"] for s in merged["per_server"]] == ["launch --port 1", "launch --port 2", "launch --port 3"]
    table = agentic_report.agentic_table({"concurrency": [1], "configs": {"c": merged}})
    assert "  c dec tok/s by server: 0: 500, 1: 333, 1: 312, 2: 476" in table


def _replay(ttft, spm=1.0, sessions=2, decode=400.0):
    """One bench_serving replay of a level as `agentic.run_level` returns it: figures, server side, rows."""
    return {"command": "bench_serving ...", "sessions": sessions, "rounds": 2 * sessions, "failed_rounds": 0,
            "ttft_median_s": ttft, "ttft_p90_s": 2 * ttft, "ttft_long_median_s": 3 * ttft, "sessions_per_min": spm,
            "tpot_median_ms": 14.0, "cache_hit_rate_pct": 92.0,
            "server": {"forward_median_s": ttft / 2, "turns_paired": 2 * sessions, "decode_tokens_per_s_median": decode},
            "ttft_by_context": {"0": {"median_s": ttft, "p90_s": 2 * ttft, "n": 2 * sessions}},
            "turns": [{"session": s, "turn": t, "context": 8000 * (t + 1), "cached": 0, "ttft_s": ttft, "error": None}
                      for s in range(sessions) for t in range(2)]}


def _agentic_file(path, configs, finished_at="2026-12-03T10:00:00+00:00", **top):
    """A results.json as one `bench agentic` invocation writes it, one server per config: `configs`
    maps a key to its levels ({"1": level}); `top` replaces top-level fields (trace, gpu, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inv = f"python -m sglang_indexcache.bench agentic --out {path.parent}"
    res = {"workload": "agentic", "model": f"{path.parent}/model", "shape": "glm-5.2-tp8", "pattern": "FFFSSS",
           "gpu": {"name": "NVIDIA H200", "cuda": "13.0"}, "device": "cuda", "versions": {"sglang": "0.5.23"},
           "trace": {"path": f"{path.parent}/trace.json", "generator": "sglang_indexcache.bench.trace",
                     "spec": {"sessions": 16, "seed": 0}, "tokenizer": f"{path.parent}/model", "turns": [2, 2],
                     "last_prompt_tokens": [16000, 16000], "sha256": "ab" * 32},
           "invocation": inv, "concurrency": [1], "mtp": False, "repeats": 1, "servers": 1,
           "kernel_defaults": {"SGLANG_INDEXCACHE_TOPK": "v2"}, "finished_at": finished_at,
           "configs": {key: {"label": f"config {key}", "server_command": f"launch {key} for {path.name}", "levels": lv,
                             "server_env": {}, "startup_s": 100.0, "kv_pool_tokens": 500000,
                             "probe": {"context": 16000, "ids_s": 0.1}, "invocation": inv, "mtp": False,
                             "repeats": max(x.get("repeats", 1) for x in lv.values()), "servers": 1}
                       for key, lv in configs.items()}}
    res.update(top)
    res["ratios"] = agentic_report.agentic_ratios(res)
    path.write_text(json.dumps(res, indent=1))
    return str(path)


def test_merge_joins_the_servers_of_separate_invocations_c_d_d_c(tmp_path):
    """Four one-server files (c, d, d, c): each config has two servers, medians over both, its files, new ratios."""
    import statistics

    from sglang_indexcache.bench import agentic_runs

    c_runs, d_runs = [(0.20, 2.0), (0.32, 2.6)], [(0.50, 1.5), (0.41, 1.2)]
    order = [("c", c_runs[0]), ("d", d_runs[0]), ("d", d_runs[1]), ("c", c_runs[1])]
    files = [_agentic_file(tmp_path / f"call{i}" / "results.json", {key: {"1": _replay(t, spm)}},
                           finished_at=f"2026-12-03T1{i}:00:00+00:00") for i, (key, (t, spm)) in enumerate(order)]
    merged = agentic_runs.merge_results(files)
    assert merged["merged_from"] == files and merged["servers"] == 2 and merged["concurrency"] == [1]
    assert merged["finished_at"] == "2026-12-03T13:00:00+00:00" and "invocation" not in merged["configs"]["c"]
    assert merged["configs"]["c"]["merged_from"] == [files[0], files[3]]
    assert merged["configs"]["d"]["merged_from"] == [files[1], files[2]]
    assert [s["server_command"] for s in merged["configs"]["c"]["per_server"]] == \
        ["launch c for results.json"] * 2 and len(merged["configs"]["c"]["invocations"]) == 2
    med = {}
    for key, runs in (("c", c_runs), ("d", d_runs)):
        cfg = merged["configs"][key]
        level = cfg["levels"]["1"]
        assert cfg["servers"] == 2 and level["run_servers"] == [0, 1] and level["repeats"] == 2
        med[key] = {"ttft_median_s": statistics.median(t for t, _ in runs),
                    "sessions_per_min": statistics.median(s for _, s in runs)}
        assert level["ttft_median_s"] == pytest.approx(med[key]["ttft_median_s"])
        assert level["ttft_long_median_s"] == pytest.approx(3 * med[key]["ttft_median_s"])
        assert level["sessions_per_min"] == pytest.approx(med[key]["sessions_per_min"])
        assert level["spread"]["ttft_median_s"] == pytest.approx(sorted(t for t, _ in runs))
        assert len(level["turns"]) == 2 * 4 and {r["run"] for r in level["turns"]} == {0, 1}
    # c over d: a time is d's over c's, a rate c's over d's (>1: c is faster)
    row = merged["ratios"]["over_d"]["1"]["c"]
    assert row["ttft_median_s"] == pytest.approx(med["d"]["ttft_median_s"] / med["c"]["ttft_median_s"])
    assert row["sessions_per_min"] == pytest.approx(med["c"]["sessions_per_min"] / med["d"]["sessions_per_min"])
    assert merged["ratios"]["over_d_range"]["1"]["c"]["ttft_median_s"] == pytest.approx([0.41 / 0.32, 0.50 / 0.20])
    assert merged["ratios"]["paired_over_d"]["1"]["c"]["median"] == pytest.approx(
        med["d"]["ttft_median_s"] / med["c"]["ttft_median_s"])
    assert "c" not in merged["ratios"].get("over_c", {}).get("1", {})  # d is a reference, not an after of c


@pytest.mark.parametrize("field, change", [
    ("trace", lambda r: r["trace"].update(sha256="cd" * 32)),
    ("gpu", lambda r: r["gpu"].update(name="NVIDIA H100 80GB HBM3")),
    ("pattern", lambda r: r.update(pattern="FSSFSS")),
])
def test_merge_takes_other_paths_but_refuses_another_experiment(field, change, tmp_path):
    """Other trace, tokenizer and model paths merge; another trace sha256, GPU or pattern is refused, naming the field."""
    from sglang_indexcache.bench import agentic_runs

    one = _agentic_file(tmp_path / "one" / "results.json", {"c": {"1": _replay(0.2)}})
    two = _agentic_file(tmp_path / "two" / "results.json", {"c": {"1": _replay(0.3)}})
    first, second = (json.loads(open(f).read()) for f in (one, two))
    assert first["trace"]["path"] != second["trace"]["path"] and first["trace"]["tokenizer"] != second["trace"]["tokenizer"]
    assert agentic_runs.merge_results([one, two])["configs"]["c"]["servers"] == 2
    change(second)
    (tmp_path / "two" / "results.json").write_text(json.dumps(second))
    with pytest.raises(SystemExit, match=f"^{two}: {field} .* differs from {one}'s .*not one experiment"):
        agentic_runs.merge_results([one, two])


@pytest.mark.parametrize("levels", [{"1": _replay(0.3), "16": _replay(0.9, sessions=16)}, {"1": _replay(0.3, sessions=3)}])
def test_merge_refuses_servers_of_a_config_that_replayed_other_turns(levels, tmp_path):
    """A config whose servers ran other concurrencies, or another number of sessions, is refused."""
    from sglang_indexcache.bench import agentic_runs

    one = _agentic_file(tmp_path / "one" / "results.json", {"c": {"1": _replay(0.2)}, "d": {"1": _replay(0.4)}})
    two = _agentic_file(tmp_path / "two" / "results.json", {"c": levels, "d": {"1": _replay(0.5)}})
    with pytest.raises(SystemExit, match="^config c: .*its servers must replay the same turns"):
        agentic_runs.merge_results([one, two])


@pytest.mark.parametrize("field, value", [("label", "config c, FSSFSS"), ("server_env", {"SGLANG_INDEXCACHE_TOPK": "upstream"})])
def test_merge_refuses_servers_of_a_key_that_ran_another_configuration(field, value, tmp_path):
    """Two servers under one key with another label (pattern) or other variables are not one configuration."""
    from sglang_indexcache.bench import agentic_runs

    one = _agentic_file(tmp_path / "one" / "results.json", {"e": {"1": _replay(0.2)}})
    two = _agentic_file(tmp_path / "two" / "results.json", {"e": {"1": _replay(0.3)}})
    second = json.loads(open(two).read())
    second["configs"]["e"][field] = value
    (tmp_path / "two" / "results.json").write_text(json.dumps(second))
    with pytest.raises(SystemExit, match=f"^config e: {two}'s {field} .* differs from {one}'s .*not one configuration"):
        agentic_runs.merge_results([one, two])


def test_an_entry_of_several_servers_is_not_split_again(tmp_path):
    """split_runs refuses an entry that already merges servers (`servers` > 1 or `per_server`), so merge does too."""
    from sglang_indexcache.bench import agentic_runs

    files = [_agentic_file(tmp_path / f"s{i}" / "results.json", {"c": {"1": _replay(0.2 + i / 10)}}) for i in range(2)]
    merged = agentic_runs.merge_results(files)
    entry = json.loads(open(files[0]).read())["configs"]["c"]
    assert agentic_runs.split_runs(entry)["_runs"] == {"1": [entry["levels"]["1"]]}  # one server, one run
    for many in (merged["configs"]["c"], {**entry, "servers": 2}, {**entry, "per_server": merged["configs"]["c"]["per_server"]}):
        with pytest.raises(SystemExit, match="already merges"):
            agentic_runs.split_runs(many)
    again = tmp_path / "merged" / "results.json"
    again.parent.mkdir()
    again.write_text(json.dumps(merged))
    with pytest.raises(SystemExit, match="config 'config c' already merges 2 servers"):
        agentic_runs.merge_results([str(again), files[0]])


def test_a_level_of_repeated_replays_splits_into_its_runs_and_merges_with_another_server(tmp_path):
    """A --repeats level (combine_runs of two runs) splits back into the same two runs; merged with a one-run server, 3 runs."""
    import statistics

    from sglang_indexcache.bench import agentic_runs

    runs = [_replay(0.2, 2.0, decode=300.0), _replay(0.4, 1.5, decode=500.0)]
    one = _agentic_file(tmp_path / "one" / "results.json", {"c": {"1": agentic_runs.combine_runs(runs)}}, repeats=2)
    saved = json.loads(open(one).read())["configs"]["c"]
    assert saved["levels"]["1"]["repeats"] == 2
    assert agentic_runs.split_runs(saved)["_runs"]["1"] == runs
    two = _agentic_file(tmp_path / "two" / "results.json", {"c": {"1": _replay(0.35, 1.8, decode=450.0)}})
    merged = agentic_runs.merge_results([one, two])["configs"]["c"]
    level = merged["levels"]["1"]
    assert merged["repeats"] == [1, 2]  # the servers' own --repeats, which differ
    assert level["repeats"] == 3 and level["run_servers"] == [0, 0, 1]
    assert level["ttft_median_s"] == pytest.approx(statistics.median([0.2, 0.4, 0.35]))
    assert level["sessions_per_min"] == pytest.approx(statistics.median([2.0, 1.5, 1.8]))
    assert [r["server"]["decode_tokens_per_s_median"] for r in level["runs"]] == [300.0, 500.0, 450.0]
    assert [r["run"] for r in level["turns"]] == [0] * 4 + [1] * 4 + [2] * 4
    assert [r["ttft_s"] for r in level["turns"][::4]] == [0.2, 0.4, 0.35]


def test_bench_merge_writes_what_merge_results_gives(tmp_path, capsys):
    """`bench merge A B --out DIR --png P` returns 0 and writes merge_results([A, B]) (but its stamps); one file is refused."""
    from sglang_indexcache.bench import agentic_runs
    from sglang_indexcache.bench.__main__ import main

    files = [_agentic_file(tmp_path / f"s{i}" / "results.json", {"a": {"1": _replay(0.5 + i / 10)},
                                                                  "c": {"1": _replay(0.2 + i / 10)}}) for i in range(2)]
    out = tmp_path / "merged"
    assert main(["merge", *files, "--out", str(out), "--png", str(tmp_path / "merged.png")]) == 0
    assert "c over a: ttft_long_median_s" in capsys.readouterr().out
    written = json.loads((out / "results.json").read_text())
    expected = json.loads(json.dumps(agentic_runs.merge_results(files)))
    stamps = ("merged_at", "invocation")
    assert {k: v for k, v in written.items() if k not in stamps} == {k: v for k, v in expected.items() if k not in stamps}
    assert set(stamps) <= set(written) and written["configs"]["c"]["servers"] == 2
    assert written["invocation"].split()[1:] == ["-m", "sglang_indexcache.bench", "merge", *files, "--out", str(out),
                                                 "--png", str(tmp_path / "merged.png")]
    assert agentic_report.plot_reference(written) == "a"  # the ratio chart divides by (a)
    assert (tmp_path / "merged.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="at least two results files"):
        main(["merge", files[0], "--out", str(tmp_path / "single")])
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "turn.json").write_text(json.dumps({"workload": "turn"}))
    for bad, said in (("broken.json", "not a readable results file"), ("turn.json", "not the results of `bench agentic`"),
                      ("missing.json", "not a readable results file")):
        with pytest.raises(SystemExit, match=f"{bad}: {said}"):
            main(["merge", files[0], str(tmp_path / bad), "--out", str(tmp_path / "bad")])


@pytest.mark.parametrize("keys, ref", [("acd", "a"), ("cd", "d"), ("ce", "c")])
def test_the_ratio_chart_divides_by_the_first_reference_that_ran(keys, ref, tmp_path):
    """(a) where it ran, else (d) (session 23 ran (c) and (d) alone), else (c); the chart says which."""
    path = _agentic_file(tmp_path / "r" / "results.json", {k: {"1": _replay(0.2 + i / 10)} for i, k in enumerate(keys)})
    results = json.loads(open(path).read())
    assert agentic_report.plot_reference(results) == ref
    agentic_report.agentic_plot(results, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000


@pytest.mark.engine
def test_agentic_pipeline_on_cpu(models, tmp_path):
    """The whole pipeline on a CPU server: trace, SGLang's bench_serving multi-turn replay at
    two concurrencies, twice each (--repeats 2) on each of two servers (--servers 2), per-turn
    rows, table and plot. Every later turn hits the radix cache for the history bench_serving
    sent before (its prompt and the server's reply); each replay starts from a flushed cache (the
    second on a server too). A level's figures are medians over both servers' runs."""
    from sglang_indexcache.bench import agentic

    args = argparse.Namespace(
        out=str(tmp_path), shape=None, model_path=models["deepseek-tiny"], configs=["c"], pattern="FSSFSS",
        low=None, searched=None, concurrency=[1, 2], min_sessions=2, trace=None, size="smoke", seed=0, mtp=False,
        mem_fraction=None, chunked_prefill_size=512, device="cpu", timeout=900, paged_rows=128, repeats=2,
        servers=2, prefill_graphs="sglang", profile_probe=True,
    )
    assert agentic.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    cfg = results["configs"]["c"]
    assert "--index-cache-pattern FSSFSS" in cfg["server_command"]
    assert cfg["invocation"] == results["invocation"] and cfg["repeats"] == 2  # each config keeps its own
    assert cfg["servers"] == results["servers"] == 2
    assert results["concurrency"] == [1, 2]
    ports = {s["server_command"].split("--port ")[1].split()[0] for s in cfg["per_server"]}
    assert len(cfg["per_server"]) == 2 and len(ports) == 2 and all(s["startup_s"] > 0 for s in cfg["per_server"])
    assert all((tmp_path / f"c-s{n}-server.log").exists() for n in (0, 1))
    probe = cfg["probe"]  # one long turn through three doors: chat, text, token ids
    assert probe["context"] >= results["trace"]["last_prompt_tokens"][0] - 200
    assert all(probe[k] > 0 for k in ("cold_chat_s", "chat_s", "text_s", "ids_s"))
    # the server's own forward time of the same requests, from its log: inside the client's time
    assert all(0 < probe["forward_s"][k] < probe[k] for k in ("cold_chat_s", "chat_s", "text_s", "ids_s"))
    # --profile-probe: one more token-id request under SGLang's profiler, per server (CPU: no kernels)
    for n, server in enumerate(cfg["per_server"]):
        assert (tmp_path / "profiles" / f"c-s{n}" / server["probe"]["profile"]["trace"]).exists()
    for level in ("1", "2"):
        s = cfg["levels"][level]
        assert "sglang.benchmark.serving" in s["command"] and f"--max-concurrency {level}" in s["command"]
        assert s["failed_rounds"] == 0 and s["sessions"] == 2
        assert s["rounds"] == sum(results["trace"]["turns"][:2])
        assert s["repeats"] == 4 and len(s["runs"]) == 4 and len(s["turns"]) == 4 * s["rounds"]
        assert s["run_servers"] == [0, 0, 1, 1]
        assert all((tmp_path / f"c-s{n}-c{level}-r{i}.jsonl").exists() for n in (0, 1) for i in (0, 1))
        assert all(r["output_tokens"] == 8 for r in s["turns"])
        by_session = {}
        for r in s["turns"]:
            by_session.setdefault((r["run"], r["session"]), []).append(r)
        for run in range(4):  # each replay starts from a flushed cache (later sessions share the system prompt)
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
        # the backend's own counter over the level (every run): 2 of FSSFSS's 6 layers run the indexer
        calls = s["server"]["indexer_layer_calls"]
        assert calls["EXTEND:run"] > 0 and calls["EXTEND:skipped"] == 2 * calls["EXTEND:run"], calls
        assert calls["DECODE:skipped"] == 2 * calls["DECODE:run"] > 0, calls
    agentic_report.agentic_plot({**results, "ratios": agentic_report.agentic_ratios(results)}, tmp_path / "agentic.png")
    assert (tmp_path / "agentic.png").stat().st_size > 10_000


def test_shape_tokenizer_round_trips_every_model_id(tmp_path):
    """A dummy model at a real shape emits ids past the 1024-token BPE: each must decode to
    text that encodes back to itself, or replies sent back by bench_serving change length;
    text without them gets the unpadded BPE's ids (the traces are made of such text)."""
    import random

    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import VOCAB_SIZE, build_tokenizer

    build_tokenizer(tmp_path / "padded", cover=VOCAB_SIZE + 512)
    build_tokenizer(tmp_path / "bpe")
    tok, bpe = (AutoTokenizer.from_pretrained(tmp_path / d) for d in ("padded", "bpe"))
    assert len(tok) == VOCAB_SIZE + 512 and len(bpe) == VOCAB_SIZE
    ids = [VOCAB_SIZE + 511, 300, VOCAB_SIZE, 77, VOCAB_SIZE + 17]
    assert tok(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids
    rng = random.Random(0)
    for n in range(200):  # BPE text, whitespace and punctuation runs next to <tN>: alike either way
        text = bpe.decode([rng.randrange(4, VOCAB_SIZE) for _ in range(60)])
        assert tok(text, add_special_tokens=False)["input_ids"] == bpe(text, add_special_tokens=False)["input_ids"]
        mixed = [rng.choice((rng.randrange(4, VOCAB_SIZE), rng.randrange(VOCAB_SIZE, VOCAB_SIZE + 512)))
                 for _ in range(60)]
        back = tok(tok.decode(mixed), add_special_tokens=False)["input_ids"]
        pads = [i for i in mixed if i >= VOCAB_SIZE]
        assert [i for i in back if i >= VOCAB_SIZE] == pads  # the BPE part may merge anew, <tN> never
    for s in (" ", "  ", "\n", "..", " <", "x"):  # the text before a <tN> splits as at a text's end
        want = bpe(s, add_special_tokens=False)["input_ids"]
        assert tok(s + f"<t{VOCAB_SIZE}>", add_special_tokens=False)["input_ids"] == [*want, VOCAB_SIZE], s


def test_shape_tokenizer_takes_sglangs_parallel_prompt_encoder(tmp_path):
    """SGLang's chat door encodes a long prompt in parallel for a real checkpoint's tokenizer;
    it must plan a shape's padded tokenizer the same way (not fall back to a serial encode), and
    give the serial encode's ids. Earlier shape tokenizers padded with ~150K added tokens made
    it split on an alternation of all of them (6.2 s for a 129K-token turn)."""
    import random

    from sglang.srt.entrypoints.openai import parallel_prompt_encode as ppe
    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import SPECIAL_TOKENS, VOCAB_SIZE, build_tokenizer

    build_tokenizer(tmp_path, cover=VOCAB_SIZE + 4096)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.model_max_length = 1 << 30
    rng = random.Random(1)
    messages = [{"role": "system", "content": "Tools: bash, read_file."}]
    for turn in range(12):
        messages.append({"role": "user", "content": tok.decode([rng.randrange(4, VOCAB_SIZE) for _ in range(900)])})
        messages.append({"role": "assistant", "content": tok.decode([rng.randrange(4, VOCAB_SIZE + 4096) for _ in range(200)])})
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert len(text) > ppe.envs.SGLANG_PARALLEL_PROMPT_ENCODE_MIN_CHARS.get()
    plan = ppe._build_plan(tok)
    assert plan is not None
    # the alternation it scans a prompt with: the template's special tokens, not one per <tN>
    assert plan[2].pattern == ppe._alternation(SPECIAL_TOKENS).pattern
    assert len(ppe.split_prompt(text, plan[2], plan[3], plan[4])) > 2  # cut at the template's tokens
    assert ppe.parallel_prompt_encode(tok, text, {"add_special_tokens": False}) == tok.encode(text, add_special_tokens=False)
    assert common.tokenizer_env(tmp_path) == {}


def test_padded_tokenizer_turns_sglangs_parallel_prompt_encoder_off(tmp_path):
    """A tokenizer with ~150K added tokens (a shape folder made before session 17; no real
    checkpoint's) makes SGLang's parallel prompt encoder slow (bench/common.tokenizer_env); the
    benchmark turns it off for such a tokenizer only."""
    padded, real = tmp_path / "padded", tmp_path / "real"
    for folder, n in ((padded, common.PADDED_TOKENIZER_ADDED + 1), (real, 300)):
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps(
            {"added_tokens": [{"id": i, "content": f"<t{i}>"} for i in range(n)]}))
    assert common.tokenizer_env(padded) == {"SGLANG_PARALLEL_PROMPT_ENCODE": "0"}
    assert common.tokenizer_env(real) == {}
    assert common.tokenizer_env(tmp_path) == {}  # no tokenizer.json: SGLang's default


def test_the_tokenizer_corpus_does_not_depend_on_the_python_running(monkeypatch):
    """The shape tokenizers learn their merges from a text shipped with the package, not from the
    interpreter's `pydoc_data` (which differs between Python 3.11 and 3.12: the same seed gave
    different traces here and on the GPU host until session 20). The digest is CPython 3.11.7's
    topics text, what every tokenizer made on this project's machines learned from."""
    import hashlib
    import sys
    import types

    from sglang_indexcache import tiny_model

    fake = types.ModuleType("pydoc_data.topics")
    fake.topics = {"other": "another interpreter's documentation"}
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", fake)
    text = tiny_model._training_text()
    assert hashlib.sha256(text.encode()).hexdigest() == "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"
