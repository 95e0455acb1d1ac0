"""On a CUDA GPU: `indexcache` against SGLang's own `dsa` backend, same kernels, same tokens.

Every comparison is between two real servers started here with SGLang's DSA kernels
(`--dsa-*-backend flashmla_sparse`, DeepGEMM indexer logits, fused top-k), bf16, on a
GLM-MoE-DSA model at GLM-5.2's attention dimensions with dummy weights (8 layers).
Equality means the same greedy tokens and bit-identical prompt log-probabilities.

Why that model and not the tiny presets: `gpu_common.py`, which holds the servers, models and
comparisons this module and the other GPU modules share.

  * all-Full `indexcache` == `dsa`;
  * a Shared pattern through `--index-cache-pattern` == upstream's native sharing given
    the same pattern through `--json-model-override-args`;
  * CUDA graphs on == off; SGLang's default prefill graphs replayed, counted, == upstream;
    radix prefix hit and chunked prefill == a cold unchunked run; FP8 KV; the paged route.
The launch lines users serve with (switchable, leading S, MTP, hierarchical cache, injected
faults) are in `test_gpu_serving.py`.
Skipped (by conftest) where torch sees no CUDA GPU.
"""

from __future__ import annotations

import json

import pytest

from gpu_common import (  # noqa: F401  (fixtures are found by name)
    DSA, DUMMY, GPU_ARGS, GPU_ARGS_AUTO_DSA, IC, MODEL, NEW_TOKENS, PATTERN, PROMPTS, assert_same, check_counters,
    gpu_models, monkeypatch_module, prompt, run_all, servers,
)

from sglang_indexcache.server import Server

pytestmark = [pytest.mark.gpu, pytest.mark.engine]


# ---- sharing on GPU against upstream ----------------------------------------------------


def test_all_full_equals_dsa(servers):
    full = json.dumps({"indexer_types": ["full"] * 8})
    dsa = servers("dsa_full", MODEL, *DUMMY, *DSA, "--json-model-override-args", full)
    ref = run_all(dsa, PROMPTS[:3])
    assert_same(run_all(dsa, PROMPTS[:3]), ref)  # the reference is run-to-run stable
    ours_srv = servers("ic_full", MODEL, *DUMMY, *IC, "--index-cache-pattern", "F" * 8)
    assert_same(run_all(ours_srv, PROMPTS[:3]), ref)
    check_counters(ours_srv, "F" * 8)


def test_declared_schedule_equals_dsa(servers):
    # config.json declares freq 4 / offset 3: FFFSSSFS on 8 layers, for both backends.
    ref = run_all(servers("dsa_declared", MODEL, *DUMMY, *DSA), PROMPTS[:3])
    ours_srv = servers("ic_declared", MODEL, *DUMMY, *IC)
    assert_same(run_all(ours_srv, PROMPTS[:3]), ref)
    check_counters(ours_srv, "FFFSSSFS")


def test_pattern_flag_equals_upstream_native_sharing(servers):
    native = servers("dsa_native", MODEL, *DUMMY, *DSA, "--json-model-override-args",
                     json.dumps({"indexer_types": None, "index_topk_pattern": PATTERN}))
    ref = run_all(native, PROMPTS[:3])
    ours_srv = servers("ic_pattern", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN)
    assert_same(run_all(ours_srv, PROMPTS[:3]), ref)
    check_counters(ours_srv, PATTERN)
    assert ours_srv.stats()["graph_replays"] > 0  # decode ran under CUDA graphs


# SGLANG_INDEXCACHE_TOPK (backend/topk.py; v2-paged by default since session 26, v2 from session
# 21) keeps the same set as SGLang's legacy kernel but may write it in another order, which sparse
# attention sums in: a bound on the prompt log-probabilities, not bit equality (on an H200, session
# 21, v2's largest difference was 0).
EXTEND_TOPK_LOGPROB_TOL = 1e-2


def test_v2_extend_topk_equals_sglangs_top_k(servers):
    """The v2 top-k on a bf16 KV cache, with the page-table map in torch (`v2`, set) and in
    the kernel (`v2-paged`, the default), against SGLang's PAGED extend top-k (the legacy
    kernel, `SGLANG_INDEXCACHE_TOPK=upstream`) and page-table transform. Prompts up to 4,500
    tokens on top-k 2,048: most queries are sparse."""
    args = [*DUMMY, *IC, "--index-cache-pattern", PATTERN]
    legacy = servers("ic_upstream_topk", MODEL, *args, env={"SGLANG_INDEXCACHE_TOPK": "upstream"})
    ref = run_all(legacy, PROMPTS[:3])
    assert legacy.stats()["extend_topk_calls"] is None
    srv = servers("ic_v2_topk", MODEL, *args, env={"SGLANG_INDEXCACHE_TOPK": "v2"})
    got = run_all(srv, PROMPTS[:3])
    worst = max(abs(x - y) for (_, la), (_, lb) in zip(got, ref) for x, y in zip(la, lb))
    print(f"v2 top-k (bf16 KV) against SGLang's: largest prompt logprob difference {worst:.3g}")
    assert_same(got, ref, logprob_tol=EXTEND_TOPK_LOGPROB_TOL)
    check_counters(srv, PATTERN)
    assert ("SGLANG_INDEXCACHE_TOPK=v2, extends run SGLang's v2 top-k for PAGED calls too, the page-table map "
            "in torch (set;") in srv.log.read_text()
    stats = srv.stats()
    assert stats["extend_topk_calls"] > 0 and stats["extend_topk_fused_calls"] == 0  # the route, its torch map
    default = servers("ic_pattern", MODEL, *args)  # unset: v2-paged, the default
    fused = run_all(default, PROMPTS[:3])
    worst = max(abs(x - y) for (_, la), (_, lb) in zip(fused, ref) for x, y in zip(la, lb))
    between = max(abs(x - y) for (_, la), (_, lb) in zip(fused, got) for x, y in zip(la, lb))
    print(f"v2-paged top-k (bf16 KV) against SGLang's: largest prompt logprob difference {worst:.3g}; "
          f"against v2: {between:.3g}")
    assert_same(fused, ref, logprob_tol=EXTEND_TOPK_LOGPROB_TOL)
    assert_same(fused, got, logprob_tol=EXTEND_TOPK_LOGPROB_TOL)
    check_counters(default, PATTERN)
    assert ("SGLANG_INDEXCACHE_TOPK=v2-paged, extends run SGLang's v2 top-k for PAGED calls too, the page-table "
            "map in the same kernel (the default;") in default.log.read_text()
    stats = default.stats()
    print("v2-paged extend top-k calls:", stats["extend_topk_calls"], "fused:", stats["extend_topk_fused_calls"])
    # every extend's Full layers ran the fused kernel: SGLang built the row map for each
    assert stats["extend_topk_calls"] > 0 and stats["extend_topk_fused_calls"] == stats["extend_topk_calls"]


# SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS (backend/paged_extend.py) at its default (128), with SGLang's
# own PAGED transform after the paged logits (bf16: its v2 kernel when each request has one new
# row, else its legacy one), with the v2 top-k and the torch map (bf16-v2: what bench turn n/p ran)
# and with the fused v2-paged kernel (bf16-v2-paged: the package's defaults since session 26).
# Heads are whole 64-token pages, so the radix hit is the whole head and the extend is the tail.
PAGED_EXTEND_ROWS = 128
PAGED_EXTEND_ENV = {"bf16": {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": str(PAGED_EXTEND_ROWS),
                             "SGLANG_INDEXCACHE_TOPK": "upstream"},
                    "bf16-v2": {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": str(PAGED_EXTEND_ROWS),
                                "SGLANG_INDEXCACHE_TOPK": "v2"},
                    "bf16-v2-paged": {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": str(PAGED_EXTEND_ROWS)},  # the defaults
                    "fp8": {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": str(PAGED_EXTEND_ROWS)}}
TURNS = ((2560, 1), (3072, 5), (4480, 40))


def turn_logprobs(srv: Server) -> list:
    """Per turn (a cached head, then head + tail): the tail's prompt log-probabilities, the
    generated tokens and their log-probabilities (the first comes from the tail's extend)."""
    srv.flush_cache()
    out = []
    for i, (n_head, n_new) in enumerate(TURNS):
        head, tail = prompt(50 + i, n_head), prompt(60 + i, n_new)
        srv.generate(head, 1)
        r = srv.post("/generate", {"input_ids": head + tail, "return_logprob": True, "logprob_start_len": n_head,
                                   "sampling_params": {"max_new_tokens": 8, "temperature": 0.0, "ignore_eos": True}})
        meta = r["meta_info"]
        assert meta["cached_tokens"] == n_head, meta  # the extend is the tail alone
        out.append((r["output_ids"], [x[0] for x in meta["input_token_logprobs"] + meta["output_token_logprobs"]
                                      if x[0] is not None]))
    return out


@pytest.mark.parametrize("kv", ["bf16", "bf16-v2", "bf16-v2-paged", "fp8"])
def test_short_extends_on_the_paged_kernel_equal_upstream(servers, kv):
    """Turns of 1, 5 and 40 new tokens on a cached head: DeepGEMM's paged kernel scores them
    (then the top-k transform: SGLang's own PAGED one for bf16, v2 and our page-table map for
    bf16-v2, our fused kernel for bf16-v2-paged, SGLang's own v2 for fp8's RAGGED) against
    upstream native sharing with the same pattern, which scores them with the prefill kernel on
    gathered keys."""
    fp8 = ["--kv-cache-dtype", "fp8_e4m3"] if kv == "fp8" else []
    base = GPU_ARGS_AUTO_DSA if fp8 else GPU_ARGS
    native = servers("dsa_native" + "_fp8" * bool(fp8), MODEL, *DUMMY, *DSA, *fp8, "--json-model-override-args",
                     json.dumps({"indexer_types": None, "index_topk_pattern": PATTERN}), base=base)
    ref = turn_logprobs(native)
    srv = servers(f"ic_paged_extend_{kv}", MODEL, *DUMMY, *IC, *fp8, "--index-cache-pattern", PATTERN, base=base,
                  env=PAGED_EXTEND_ENV[kv])
    got = turn_logprobs(srv)
    worst = max(abs(x - y) for (_, la), (_, lb) in zip(got, ref) for x, y in zip(la, lb))
    print(f"paged extend route ({kv} KV) against upstream: largest log-prob difference {worst:.3g}")
    assert_same(got, ref, logprob_tol=EXTEND_TOPK_LOGPROB_TOL)
    check_counters(srv, PATTERN)
    calls = srv.stats()["paged_extend_calls"]
    print("paged extend calls:", calls)
    # the 3 tails at least (the heads are longer than 128 tokens), on each of the 3 Full layers
    assert calls >= 3 * PATTERN.count("F") and calls % PATTERN.count("F") == 0
    assert f"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS={PAGED_EXTEND_ROWS}, extends of at most" in srv.log.read_text()
    if kv == "bf16-v2-paged":  # each turn's Full layers ran the fused kernel
        stats = srv.stats()
        assert stats["extend_topk_fused_calls"] == stats["extend_topk_calls"] >= calls


def test_cuda_graph_off_equals_on(servers):
    on = run_all(servers("ic_pattern", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN), PROMPTS[:3])
    off_srv = servers("ic_pattern_eager", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN, "--disable-cuda-graph")
    assert_same(run_all(off_srv, PROMPTS[:3]), on)
    assert off_srv.stats()["graph_replays"] == 0
    check_counters(off_srv, PATTERN)


SHORT = [prompt(21, 300), prompt(22, 1000), prompt(23, 1900)]  # each extend replays a prefill graph


def test_breakable_prefill_graph_replays_are_counted(servers):
    """SGLang's default breakable prefill CUDA graphs: an extend of at most the chunked-prefill
    size replays a graph captured through the check, and no layer hook runs at a replay. Every
    captured graph's counts are the pattern's; each replay adds them (`prefill_graph_replays`)."""
    srv = servers("ic_pattern", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN)
    srv.flush_cache()
    before = srv.stats()
    captured = {k: v for k, v in before["graph_counts"].items() if k.startswith("PREFILL_GRAPH:")}
    print("prefill graphs captured:", len(captured), sorted(captured)[:3], "...")
    assert captured, before["graph_counts"]
    for p in SHORT:
        srv.generate(p, 4)
    after = srv.stats()
    print("prefill graph replays:", before["prefill_graph_replays"], "->", after["prefill_graph_replays"],
          "forwards:", before["forwards"], "->", after["forwards"])
    assert after["prefill_graph_replays"] - before["prefill_graph_replays"] == len(SHORT)
    check_counters(srv, PATTERN)


def test_breakable_prefill_graph_replays_equal_upstream(servers):
    """The replayed extends (prompt log-probabilities too) equal upstream native sharing's,
    replayed the same way."""
    srv = servers("ic_pattern", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN)
    before = srv.stats()["prefill_graph_replays"]
    ours = run_all(srv, SHORT)
    replayed = srv.stats()["prefill_graph_replays"] - before
    print("prefill graph replays of the requests with prompt logprobs:", replayed)
    native = servers("dsa_native", MODEL, *DUMMY, *DSA, "--json-model-override-args",
                     json.dumps({"indexer_types": None, "index_topk_pattern": PATTERN}))
    assert_same(ours, run_all(native, SHORT))
    assert replayed == len(SHORT)  # the compared extends were replays


def test_radix_hit_and_chunked_prefill_equal_cold_run(servers):
    srv = servers("ic_pattern", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN)
    head, tail = prompt(11, 2600), prompt(12, 700)
    srv.flush_cache()
    cold = srv.generate(head + tail, NEW_TOKENS)
    assert cold["meta_info"]["cached_tokens"] == 0
    srv.generate(head, 4)
    warm = srv.generate(head + tail, NEW_TOKENS)
    assert warm["meta_info"]["cached_tokens"] >= 2560, warm["meta_info"]
    assert warm["output_ids"] == cold["output_ids"]

    chunked = servers("ic_pattern_chunked", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN,
                      "--chunked-prefill-size", "1024", "--disable-radix-cache")
    got = chunked.generate(head + tail, NEW_TOKENS)
    assert got["output_ids"] == cold["output_ids"]


def decode_kernel_counts(srv: Server, out_dir, ids, steps: int = 4):
    """Kernel launches by name over `steps` decode steps of one request (SGLang's profiler,
    GPU activity only): counted by CUPTI, independent of our counters and of the schedule."""
    import collections
    import gzip
    import time

    out_dir.mkdir(parents=True, exist_ok=True)
    srv.flush_cache()
    srv.generate(ids, 4)  # prefix cached: the profiled request is decode-dominated
    srv.post("/start_profile", {"output_dir": str(out_dir), "num_steps": steps, "activities": ["GPU"],
                                "profile_by_stage": True, "profile_stages": ["decode"]})
    srv.generate(ids, 24)
    deadline = time.monotonic() + 120
    while not list(out_dir.rglob("*.trace.json.gz")) and time.monotonic() < deadline:
        time.sleep(2)
    time.sleep(3)  # let the exporter finish the file
    names = collections.Counter()
    for f in out_dir.rglob("*.trace.json.gz"):
        events = json.loads(gzip.open(f).read())["traceEvents"]
        names.update(e["name"] for e in events if e.get("cat") == "kernel")
    return names


def test_replay_counters_are_counted_at_capture(servers, tmp_path):
    """Under CUDA graphs the counters add, per replay, the indexer calls the hook saw in that
    graph's capture. Checked against CUPTI: the indexer's logits kernel launches over the same
    decode steps, for all-Full upstream (8 per step) and for indexcache FSSFSSFS."""
    dsa = servers("dsa_full", MODEL, *DUMMY, *DSA, "--json-model-override-args",
                  json.dumps({"indexer_types": ["full"] * 8}))
    ref = decode_kernel_counts(dsa, tmp_path / "dsa", PROMPTS[0])
    ours_srv = servers("ic_pattern", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN)
    got = decode_kernel_counts(ours_srv, tmp_path / "ic", PROMPTS[0])
    # DeepGEMM's decode indexer kernel, once per Full layer per step. (Its scheduling-metadata
    # kernel runs once per step, and the prefill logits kernel belongs to the extend step.)
    logits = sorted(n for n in ref if "paged_mqa_logits" in n and "metadata" not in n)
    print("decode indexer kernels:", {n[:80]: (ref[n], got[n]) for n in logits})
    assert logits, f"no decode indexer kernel in the trace; top kernels: {ref.most_common(25)}"
    launches = {"dsa": sum(ref[n] for n in logits), "ic": sum(got[n] for n in logits)}
    steps, rest = divmod(launches["dsa"], 8)  # all-Full upstream: 8 per decode step
    assert rest == 0 and steps > 0, launches
    # The profiler's window may hold another number of steps for the other server (session 44,
    # an H100: 4 for dsa, 5 for indexcache), so indexcache's are counted in its own trace: from
    # each kernel's launches a step in upstream's, what most of them agree on (sharing changes
    # the indexer's few kernels, not the attention, MoE, norms and sampling around them).
    ours_steps = steps_in(got, {n: c // steps for n, c in ref.items() if c % steps == 0 and n not in logits})
    stats = ours_srv.stats()
    print("graph counts at capture:", stats["graph_counts"], "replays:", stats["graph_replays"], launches,
          "steps:", steps, ours_steps)
    assert launches["ic"] == ours_steps * stats["graph_counts"]["DECODE:1"][0] == ours_steps * PATTERN.count("F")


def steps_in(trace, per_step: dict) -> int:
    """The decode steps a kernel trace holds, from kernels launched `per_step[name]` times a step:
    the count most of them agree on, checked to be more than half of them."""
    import collections

    implied = collections.Counter(trace[n] // k for n, k in per_step.items() if trace[n] and trace[n] % k == 0)
    assert implied, f"none of {len(per_step)} kernels in the trace"
    steps, agree = implied.most_common(1)[0]
    assert steps > 0 and agree * 2 > len(per_step), (implied, len(per_step))
    return steps


def test_default_dense_prefill_path_equals_dsa(servers):
    """SGLang's default threshold: a prefill whose KV is at most 2048 tokens takes the
    dense-MHA path (FA3), where no layer reads a top-k, unless it runs inside a prefill
    CUDA graph: SGLang 0.5.23 turns dense MHA off there (`set_dsa_prefill_impl`), and its
    default captures breakable prefill graphs, so on the H200 (2026-11-30) this test's
    prompts stayed on sparse MLA (dense_forwards 0; tokens equal to dsa). Prefill graphs off,
    the dense path runs. Needs FA3, carried in a bundle built without --strip."""
    from sglang_indexcache.bench.common import dense_prefill_env

    if dense_prefill_env():
        pytest.skip("FA3 (sgl_kernel.flash_attn) is not importable: the bundle was built with --strip")
    short = [prompt(21, 300), prompt(22, 1500), prompt(23, 2000)]
    eager_prefill = ["--cuda-graph-backend-prefill", "disabled"]
    native = servers("dsa_native_dense", MODEL, *DUMMY, *DSA, *eager_prefill, "--json-model-override-args",
                     json.dumps({"indexer_types": None, "index_topk_pattern": PATTERN}))
    ours_srv = servers("ic_pattern_dense", MODEL, *DUMMY, *IC, *eager_prefill, "--index-cache-pattern", PATTERN)
    before = ours_srv.stats()["dense_forwards"]
    assert_same(run_all(ours_srv, short), run_all(native, short))
    stats = ours_srv.stats()
    print("dense forwards:", stats["dense_forwards"] - before)
    assert stats["dense_forwards"] - before >= len(short)
    check_counters(ours_srv, PATTERN)


def test_fp8_kv_cache_equals_dsa(servers):
    """--kv-cache-dtype fp8_e4m3: the same pool dtype for both backends, the same results. The
    DSA kernels are SGLang's choice for FP8 (forcing flashmla_sparse, as GPU_ARGS does for
    bf16, fails in upstream dsa too: "kv must have dtype BFloat16" at CUDA-graph capture)."""
    fp8 = ["--kv-cache-dtype", "fp8_e4m3"]
    native = servers("dsa_native_fp8", MODEL, *DUMMY, *DSA, *fp8, "--json-model-override-args",
                     json.dumps({"indexer_types": None, "index_topk_pattern": PATTERN}), base=GPU_ARGS_AUTO_DSA)
    ref = run_all(native, PROMPTS[:3])
    ours_srv = servers("ic_pattern_fp8", MODEL, *DUMMY, *IC, *fp8, "--index-cache-pattern", PATTERN,
                       base=GPU_ARGS_AUTO_DSA)
    assert_same(run_all(ours_srv, PROMPTS[:3]), ref)
    check_counters(ours_srv, PATTERN)
