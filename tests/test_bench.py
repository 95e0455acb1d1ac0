"""The benchmark's own arithmetic and its server-driven decode path (CPU, tiny model).

The numbers that matter come from a GPU (`make bench`); here: SGLang's decode log lines
are parsed as SGLang prints them, the ratios are the ones the README quotes, and the
decode path runs end to end against a real CPU server (radix-warm prompts, B outputs of
the asked length, log lines captured)."""

from __future__ import annotations

import argparse
import json

import pytest

from sglang_indexcache import bench

# Lines in the format of SGLang 0.5.23's scheduler metrics reporter (metrics_reporter.py).
LOG = """\
[2026-11-24 08:06:28] Decode batch, #running-req: 16, #token: 1049600, token usage: 0.22, cuda graph: True, gen throughput (token/s): 546.25, #queue-req: 0
[2026-11-24 08:06:28] Decode batch, #running-req: 16, #token: 1049600, token usage: 0.22, cuda graph: True, gen throughput (token/s): 5544.84, #queue-req: 0
[2026-11-24 08:06:28] Decode batch, #running-req: 15, #token: 983040, token usage: 0.21, cuda graph: True, gen throughput (token/s): 5100.00, #queue-req: 0
[2026-11-24 08:06:29] Decode batch, #running-req: 16, #token: 1050624, token usage: 0.22, cuda graph: False, gen throughput (token/s): 5284.66, #queue-req: 0
[2026-11-24 08:06:29] Prefill batch, #new-seq: 16, #new-token: 1024, #cached-token: 1047552, token usage: 0.22, #running-req: 0, #queue-req: 0
"""


def test_decode_log_lines_keep_only_full_batch_lines():
    got = bench.decode_log_lines(LOG, 16)
    assert got["gen_throughput"] == [546.25, 5544.84, 5284.66]
    assert got["lines"] == 3 and got["graph_lines"] == 2
    assert bench.decode_log_lines(LOG, 15)["gen_throughput"] == [5100.0]
    assert bench.decode_log_lines("no decode here", 16) == {"lines": 0, "graph_lines": 0, "gen_throughput": []}


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
    r = bench.ratios(results)
    assert r["prefill_16384"]["b_over_a_time"] == pytest.approx(1.01)
    assert r["prefill_16384"]["c_speed_over_d"] == pytest.approx(1.1)
    assert r["prefill_16384"]["c_speedup_over_a"] == pytest.approx(2.0)
    assert r["decode_tokens_per_s_log"]["b_over_a"] == pytest.approx(1.01)
    assert r["decode_tokens_per_s_log"]["c_over_d"] == pytest.approx(1.2)
    assert r["decode_tokens_per_s_wallclock"]["b_over_a"] == pytest.approx(1.1)
    assert r["kv_pool_c_over_d"] == 1.0 and r["kv_pool_c_over_a"] == pytest.approx(1.1)
    text = bench.table({**results, "ratios": r})
    assert "b/a 1.010" in text and "c/d 1.200" in text


def test_committed_gpu_results_reproduce_the_quoted_ratios():
    """The README quotes these; the JSON files are what the H200 printed."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    run1 = json.loads((root / "h200-decode-2026-11-24-run1.json").read_text())
    run2 = json.loads((root / "h200-decode-2026-11-24-run2.json").read_text())
    assert round(bench.ratios(run1)["decode_tokens_per_s_log"]["b_over_a"], 3) == 1.001
    assert round(bench.ratios(run2)["decode_tokens_per_s_log"]["c_over_d"], 3) == 0.997
    for run in (run1, run2):
        for cfg in run["configs"].values():
            d = cfg["decode"]
            assert d["log_lines"] == d["log_graph_lines"] > 300  # every timed step under a CUDA graph


@pytest.mark.engine
def test_serve_decode_on_cpu(models, tmp_path):
    """The decode path against a real CPU server: radix-warm prompts, the asked number of
    tokens for every request, SGLang's log lines with B running requests captured."""
    args = argparse.Namespace(
        decode_batch=3, decode_len=200, decode_short=2, decode_steps=24, decode_repeats=2,
        decode_mem_fraction=0.5, decode_log_interval=2, chunked_prefill_size=128, seed=0,
        device="cpu", timeout=300,
    )
    d = bench.serve_decode(models["glm-tiny-full"], [*bench.CPU_ARGS, "--attention-backend", "indexcache",
                                                     "--index-cache-pattern", "FSSSFSSS"], args, tmp_path / "srv.log")
    assert d["batch_size"] == 3 and d["context"] == 200
    assert len(d["times_s"]["2"]) == len(d["times_s"]["24"]) == 2
    assert d["tokens_per_s"] > 0 and d["ms_per_step"] > 0
    assert d["log_lines"] > 0 and d["log_gen_throughput_median"] > 0
    assert d["kv_pool_tokens"] > 0
    assert "--index-cache-pattern FSSSFSSS" in d["command"]
