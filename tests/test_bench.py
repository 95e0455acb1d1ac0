"""The benchmark's own arithmetic and its server-driven paths (CPU, tiny model).

The numbers that matter come from a GPU (`make bench`); here: SGLang's decode log lines are
parsed as SGLang prints them, the ratios and profile summaries are computed as the README
describes, and the decode, turn, PP and search paths run end to end against real CPU servers.
The agentic workload's tests are in `test_bench_agentic.py`; the committed GPU results'
figures in `test_results.py`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sglang_indexcache.bench import common, decode, report

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


@pytest.mark.engine
def test_serve_decode_on_cpu(models, tmp_path):
    """The decode path against a real CPU server: radix-warm prompts, the asked number of
    tokens for every request, SGLang's log lines with B running requests captured; then
    --profile-steps: SGLang's profiler stops by itself after that many steps and its trace is
    summarised (CPU activity only: host operators, no kernels)."""
    args = argparse.Namespace(
        # three repeats of 4 and 48 steps: the medians survive one stall of the host (two
        # repeats of 24 failed the noise check beside another test run: 0.752 s for 24, 1.119 for 4)
        decode_batch=3, decode_len=200, decode_short=4, decode_steps=48, decode_repeats=3,
        decode_mem_fraction=0.5, decode_log_interval=2, chunked_prefill_size=128, seed=0,
        device="cpu", timeout=300, profile_steps=3,
    )
    d = decode.serve_decode(models["glm-tiny-full"], [*common.CPU_ARGS, "--attention-backend", "indexcache",
                                                     "--index-cache-pattern", "FSSSFSSS"], args, tmp_path / "srv.log")
    assert d["batch_size"] == 3 and d["context"] == 200
    assert len(d["times_s"]["4"]) == len(d["times_s"]["48"]) == 3
    assert d["tokens_per_s"] > 0 and d["ms_per_step"] > 0
    assert d["log_lines"] > 0 and d["log_gen_throughput_median"] > 0
    assert d["kv_pool_tokens"] > 0
    assert "--index-cache-pattern FSSSFSSS" in d["command"]
    prof = d["profile"]
    assert prof["steps"] == 3 and (tmp_path / "profiles" / prof["trace"]).is_file()
    assert prof["kernels"]["kernels"] == 0 and prof["kernels"]["host_ops"]
    # stopped without SGLang's 5-s sleep before crash diagnostics (5.2 s a stop, 0.9 s without)
    log = (tmp_path / "srv.log").read_text()
    assert "SIGTERM received" in log and "crash diagnostics" not in log


# ---- the agentic workload: SGLang's agentic-trace format, replayed by bench_serving ----------


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


def test_profile_python_functions_by_self_time_and_the_hosts_step_period():
    """--profile-stack: Python functions by self time (a parent's duration less its direct
    children's, per thread; another thread's events do not nest in it), and the host's period
    between decode graph launches, hand-counted."""
    from sglang_indexcache.bench import profile

    py = lambda name, ts, dur, tid=1: {"ph": "X", "cat": "python_function", "name": name, "ts": ts, "dur": dur,
                                       "pid": 7, "tid": tid}
    ev = [
        py("scheduler.py(10): event_loop", 0, 100),
        py("scheduler.py(20): run_batch", 0, 60),  # starts with its parent: a child, not a sibling
        py("gpu.py(30): init_forward_metadata_out_graph", 10, 20),
        py("metrics.py(40): record", 15, 5),
        py("scheduler.py(20): run_batch", 70, 20),
        py("other_thread.py(1): poll", 5, 500, tid=2),
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 12, "dur": 2},  # not Python: ignored
    ]
    t = profile.python_table({"traceEvents": ev})
    assert t["other_thread.py(1): poll"] == {"self_us": 500, "calls": 1}
    assert t["scheduler.py(20): run_batch"] == {"self_us": 40 + 20, "calls": 2}  # 60 - 20, then 20
    assert t["scheduler.py(10): event_loop"] == {"self_us": 100 - 60 - 20, "calls": 1}
    assert t["gpu.py(30): init_forward_metadata_out_graph"] == {"self_us": 15, "calls": 1}
    assert t["metrics.py(40): record"] == {"self_us": 5, "calls": 1}
    assert list(t)[0] == "other_thread.py(1): poll"
    launch = lambda ts: {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": ts, "dur": 3}
    lt = profile.launch_intervals({"traceEvents": [launch(0), launch(2300), launch(4500), launch(7700),
                                                   {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel",
                                                    "ts": 100, "dur": 2}]})
    assert lt == {"launches": 4, "median_us": 2300, "min_us": 2200, "max_us": 3200}
    assert profile.launch_intervals({"traceEvents": [launch(0)]}) == {"launches": 1}


def test_server_env_pairs_are_parsed_and_malformed_ones_named():
    """`--server-env` of `bench run` and `bench turn`: KEY=VALUE pairs (a value may hold '='); a
    pair without a key or without '=' stops the benchmark naming it, before any server starts."""
    assert common.server_env_arg(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(SystemExit, match=r"KEY=VALUE, got \['=2', 'NOEQ'\]"):
        common.server_env_arg(["A=1", "=2", "NOEQ"])


def test_the_benchmarks_own_environment_is_recorded_as_its_servers(monkeypatch):
    """A server inherits the benchmark's environment (SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit
    is given so): the results record what of SERVER_ENV_KEYS it passed on."""
    monkeypatch.setenv("SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS", "unit")
    monkeypatch.delenv("SGLANG_PARALLEL_PROMPT_ENCODE", raising=False)
    monkeypatch.delenv("SGLANG_DSA_PREFILL_DENSE_ATTN_KV_LEN_THRESHOLD", raising=False)
    assert common.inherited_env() == {"SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS": "unit"}
    monkeypatch.delenv("SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS")
    assert common.inherited_env() == {}


def test_turn_servers_run_eager_extends_unless_asked_for_sglangs_prefill_graphs():
    """`bench turn` turns SGLang's prefill graphs off (the eager turn sessions 12 and 13 profiled)
    unless `--prefill-graphs sglang`, as the agentic servers run; decode graphs for batch 1 only."""
    from sglang_indexcache.bench import turn

    assert turn.graph_flags("off") == ["--cuda-graph-max-bs-decode", "1", "--cuda-graph-backend-prefill", "disabled"]
    assert turn.graph_flags("sglang") == ["--cuda-graph-max-bs-decode", "1"]


def test_turn_profile_pipeline_on_cpu(models, tmp_path):
    """`bench turn` on a CPU server: the prefix hits the radix cache on every timed turn (the
    new tokens do not), the server's forward time is read, and SGLang's /start_profile and
    /stop_profile leave one trace per turn size (CPU activity only: no kernels to count)."""
    from sglang_indexcache.bench import turn

    args = argparse.Namespace(
        out=str(tmp_path), shape="flash-12", model_path=models["deepseek-tiny"], configs=["c"], pattern="FSSFSS",
        context=512, new=[1, 64], repeats=2, seed=0, mem_fraction=None, chunked_prefill_size=512,
        timeout=900, device="cpu", server_args="--max-running-requests 4", server_env=["SGLANG_DSA_FUSE_TOPK=0"],
        paged_rows=8192, prefill_graphs="off", warm_decode=4,
    )
    assert turn.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["prefill_graphs"] == "off" and results["warm_decode"] == 4
    # --warm-decode: one request decoded 4 tokens on 64 prompt tokens, before the cold prefix (the
    # server's own start-up warm-up request may come first)
    seen = [(int(m[0]), int(m[2])) for m in common.TIME_STATS.findall((tmp_path / "c-server.log").read_text())]
    assert (64, 4) in seen and seen.index((64, 4)) < seen.index((512, 1)), seen
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
