"""The agentic workload (`bench/trace.py`, `bench/agentic.py`, `bench/agentic_report.py`) on CPU.

The trace generator (seeded, SGLang's format), the pairing of bench_serving's rounds with the
trace, the server-side figures as SGLang prints them, and the whole pipeline against a CPU server
on the tiny model. The ratios over (a), (d) and (c): `test_bench_agentic_report.py`; results of
several runs and `bench merge`: `test_bench_agentic_runs.py`; the shape tokenizers:
`test_shape_tokenizer.py`."""

from __future__ import annotations

import argparse
import json

import pytest

from sglang_indexcache.bench import agentic_report, common, ttft_split


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


def test_a_pool_smaller_than_the_live_sessions_is_said_before_the_replay_and_in_the_table():
    """Session 36: flash-12 at concurrency 16 on an H100 (fraction 0.3) had a 574,336-token pool
    for 16 sessions that grow to about 128K each; the replay evicted and re-prefilled histories
    (26 % of prompt tokens cached where an H200 had 93 %), a measure of recomputation that the
    figures did not say."""
    from sglang_indexcache.bench import agentic

    conv = lambda *ctx: [{"prompt_tokens": x} for x in ctx]  # noqa: E731
    trace = {"metadata": {"spec": {"reply_tokens": 10}, "system_tokens": 100},
             "conversations": [conv(200, 900), conv(200, 500, 1000), conv(300, 700), conv(200, 400)]}
    assert agentic.working_set(trace, 4, 1) == 1010  # the longest session, its last reply included
    # the 2 largest last contexts of the 3 sessions replayed, the shared system prompt once
    assert agentic.working_set(trace, 3, 2) == 1010 + 910 - 100
    assert agentic.working_set(trace, 2, 4) == 1010 + 910 - 100  # no more live than replayed
    assert agentic.pool_short(1820, 1820, 2) is None and agentic.pool_short(None, 10**6, 16) is None
    assert "holds 1,819 tokens, the 2 live sessions reach 1,820" in agentic.pool_short(1819, 1820, 2)

    def level(need):
        return {"ttft_median_s": 1.0, "ttft_p90_s": 1.0, "ttft_long_median_s": None, "sessions_per_min": 1.0,
                "kv_working_set_tokens": need}

    results = {"concurrency": [1, 16], "configs": {"d": {"label": "d", "kv_pool_tokens": 574336,
                                                         "levels": {"1": level(131247), "16": level(2040320)}}}}
    table = agentic_report.agentic_table(results).splitlines()
    (short,) = [line for line in table if "KV POOL" in line]
    assert short.endswith("KV POOL 574,336 < 2,040,320 NEEDED") and table.index(short) > table.index("concurrency 16:")


def test_server_side_time_stats_and_histograms_parse_as_sglang_prints_them():
    from sglang_indexcache.bench import server_metrics

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
    before = server_metrics.histogram_sums("")
    after = server_metrics.histogram_sums(metrics)
    assert server_metrics.server_side(before, after) == {"time_to_first_token_mean_s": 1.5}
    # the indexcache backend's counter (backend/metrics.py), summed over ranks, as a delta
    calls = ('sglang:indexcache_indexer_layer_calls_total{forward_mode="EXTEND",model_name="m",outcome="run",'
             'pp_rank="0",tp_rank="0"} 12.0\n'
             'sglang:indexcache_indexer_layer_calls_total{forward_mode="EXTEND",model_name="m",outcome="run",'
             'pp_rank="0",tp_rank="1"} 12.0\n'
             'sglang:indexcache_indexer_layer_calls_created{forward_mode="EXTEND",model_name="m",outcome="run",'
             'pp_rank="0",tp_rank="0"} 1.7e9\n'
             'sglang:indexcache_indexer_layer_calls_total{forward_mode="DECODE",model_name="m",outcome="skipped",'
             'pp_rank="0",tp_rank="0"} 30.0\n')
    assert server_metrics.indexer_calls(calls) == {"EXTEND:run": 24.0, "DECODE:skipped": 30.0}
    before = {**before, "calls": {"EXTEND:run": 4.0}}
    after = {**after, "calls": server_metrics.indexer_calls(calls)}
    assert server_metrics.server_side(before, after)["indexer_layer_calls"] == {"EXTEND:run": 20.0, "DECODE:skipped": 30.0}
    assert "indexer_layer_calls" not in server_metrics.server_side({**before, "calls": {}}, {**after, "calls": {}})  # dsa


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


def test_the_control_config_is_offered_and_refused_on_cpu(models, tmp_path):
    """(i), dsa with the pattern as indexer_types (the model config indexcache installs, without
    its backend), is a configuration of the agentic bench; upstream dsa needs CUDA."""
    from sglang_indexcache.bench.__main__ import main

    with pytest.raises(SystemExit, match="--device cpu runs only indexcache configurations"):
        main(["agentic", "--out", str(tmp_path), "--device", "cpu", "--model-path", models["deepseek-tiny"],
              "--pattern", "FSSFSS", "--configs", "c", "i"])


def test_mtp_gets_a_model_with_a_nextn_layer_and_refuses_one_without(models, tmp_path):
    """`--mtp` drafts with the model's NextN layer: `--shape` writes the shape with one (the
    shapes declare none); a `--model-path` declaring none is refused before any work."""
    from sglang_indexcache.bench.__main__ import main

    plain = json.loads((common.make_model("flash-12", tmp_path / "model") / "config.json").read_text())
    mtp = json.loads((common.make_model("flash-12", tmp_path / "model-nextn", nextn=1) / "config.json").read_text())
    assert plain["num_nextn_predict_layers"] == 0 and mtp.pop("num_nextn_predict_layers") == 1
    plain.pop("num_nextn_predict_layers")
    assert mtp == plain  # nothing else of the shape changes
    assert common.nextn_layers(models["deepseek-tiny"]) == 0
    with pytest.raises(SystemExit, match="--mtp drafts with the model's NextN layer: .* declares none"):
        main(["agentic", "--out", str(tmp_path / "out"), "--device", "cpu", "--model-path", models["deepseek-tiny"],
              "--pattern", "FSSFSS", "--configs", "c", "--mtp"])
    assert not (tmp_path / "out" / "trace.json").exists()


def test_each_level_is_saved_before_the_server_stops(models, tmp_path, monkeypatch):
    """A level's figures reach results.json as soon as its replay is done, while the server
    still runs: session 31's device call ended during a server's stop and took a finished
    replay's figures with it."""
    from sglang_indexcache.bench import agentic

    def cut_short(key, cfg, *a, on_level=None, **kw):  # one level done, then the call ends
        entry = {"label": cfg["label"], "server_command": "S", "levels": {"1": {"sessions_per_min": 7.0}},
                 "_runs": {"1": [{"sessions_per_min": 7.0}]}}
        on_level(entry)
        raise KeyboardInterrupt("the device call's end")

    monkeypatch.setattr(agentic, "run_config", cut_short)
    args = argparse.Namespace(
        out=str(tmp_path), shape=None, model_path=models["deepseek-tiny"], configs=["c"], pattern="FSSFSS",
        low=None, searched=None, concurrency=[1, 2], min_sessions=2, trace=None, size="smoke", seed=0, mtp=False,
        mem_fraction=None, chunked_prefill_size=512, device="cpu", timeout=900, paged_rows=128, repeats=1,
        servers=1, prefill_graphs="sglang", profile_probe=False,
    )
    with pytest.raises(KeyboardInterrupt):
        agentic.run(args)
    saved = json.loads((tmp_path / "results.json").read_text())["configs"]["c"]
    assert saved["levels"] == {"1": {"sessions_per_min": 7.0}} and saved["servers"] == 1
    assert "_runs" not in saved


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
        servers=2, prefill_graphs="sglang", profile_probe=True, py_spy=True,
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
        # every live session's history fits the pool (else the table says KV POOL ... NEEDED)
        assert 0 < s["kv_working_set_tokens"] <= min(p["kv_pool_tokens"] for p in cfg["per_server"])
        # the server's own view, paired with bench_serving's rounds
        assert s["server"]["turns_paired"] == s["rounds"], s["server"]
        assert 0 < s["server"]["time_to_first_token_mean_s"] and s["server"]["forward_median_s"] > 0
        assert s["tpot_median_ms"] > 0
        # the backend's own counter over the level (every run): 2 of FSSFSS's 6 layers run the indexer
        calls = s["server"]["indexer_layer_calls"]
        assert calls["EXTEND:run"] > 0 and calls["EXTEND:skipped"] == 2 * calls["EXTEND:run"], calls
        assert calls["DECODE:skipped"] == 2 * calls["DECODE:run"] > 0, calls
        # --py-spy: each replay's scheduler stacks, in SGLang's event loop, and its HTTP process's
        for run in s["runs"]:
            spy = run["py_spy"]
            assert spy["error"] is None and [f["path"].rsplit("-", 1)[1] for f in spy["files"]] == [
                "pyspy.txt.gz", "http.txt.gz"], spy
            assert all(f["samples"] > 0 for f in spy["files"])
            assert any("event_loop" in name for name, _ in spy["files"][0]["inclusive"]), spy
        assert all((tmp_path / f"c-s{n}-c{level}-r{i}-pyspy{h}.txt.gz").exists()
                   for n in (0, 1) for i in (0, 1) for h in ("", "-http"))
        # where each turn's TTFT went, from the server's request log: stages that add up to the
        # client's TTFT, with the prefill inside the server's forward time of the same turn
        for r in s["turns"]:
            st = r["stages"]
            assert sum(st.values()) == pytest.approx(r["ttft_s"], abs=1e-5), r
            assert 0 < st["prefill"] < r["server_forward_s"] and st["tokenize"] > 0 and st["queue"] >= 0, r
            # every stage but the hand-over runs from a stamp to one that causally follows it; the
            # tokenizer stamps its hand-over after its send returns, so the scheduler may have queued
            # the request first (-6.6 and -7.4 ms on a 2-core machine running two test suites)
            assert min(v for k, v in st.items() if k != "handover") > -0.005, r
            assert st["handover"] > -0.05, r
            assert r["outside_s"] + r["sched_ttft_s"] == pytest.approx(r["ttft_s"])
        assert s["parts_turns"] == s["rounds"]
        for i, run in enumerate(s["runs"]):  # each run's stage means add up to its mean TTFT
            mean_ttft = sum(t["ttft_s"] for t in s["turns"] if t["run"] == i) / s["rounds"]
            assert sum(run[f"part_{k}_mean_s"] for k in ttft_split.STAGES) == pytest.approx(mean_ttft, abs=1e-5)
    agentic_report.agentic_plot({**results, "ratios": agentic_report.agentic_ratios(results)}, tmp_path / "agentic.png")
    assert (tmp_path / "agentic.png").stat().st_size > 10_000
