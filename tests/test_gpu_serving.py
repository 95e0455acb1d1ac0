"""On a CUDA GPU, the launch lines users serve with: a switchable server, a leading Shared layer
promoted, MTP, the hierarchical cache, and injected faults that must stop the server.

The servers, models and comparisons are `gpu_common.py`'s (its fixtures and helpers, imported);
equality means the same greedy tokens and bit-identical prompt log-probabilities there too.
Skipped (by conftest) where torch sees no CUDA GPU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpu_common import (  # noqa: F401  (fixtures are found by name)
    DSA, DUMMY, GPU_ARGS, IC, MODEL, NEW_TOKENS, PATTERN, PROMPTS, assert_same, check_counters,
    gpu_models, monkeypatch_module, prompt, run_all, servers,
)

from sglang_indexcache.server import Server, ServerError

pytestmark = [pytest.mark.gpu, pytest.mark.engine]


def test_switchable_server_equals_a_server_started_with_the_pattern(servers):
    """--index-cache-switchable on CUDA (CUDA graphs off, as the flag requires): started all-Full,
    switched to PATTERN through the admin route, the prompt log-probabilities equal those of a
    server started with PATTERN (both eager), and the counters follow the new roles."""
    from sglang_indexcache.server import post_json

    ref = run_all(servers("ic_pattern_eager", MODEL, *DUMMY, *IC, "--index-cache-pattern", PATTERN,
                          "--disable-cuda-graph"), PROMPTS[:3])
    srv = servers("ic_switchable", MODEL, *DUMMY, *IC, "--index-cache-pattern", "F" * 8, "--index-cache-switchable",
                  "--admin-api-key", "k", "--disable-cuda-graph")
    assert post_json(srv.url + "/index_cache/pattern", {"pattern": PATTERN}, token="k")["pattern"] == PATTERN
    got = []
    for p in PROMPTS[:3]:  # no flush_cache: it is an admin request on this server, and the switch flushed
        r = srv.generate(p, NEW_TOKENS, logprobs=True)
        got.append((r["output_ids"], [x[0] for x in r["meta_info"]["input_token_logprobs"][1:]]))
    assert_same(got, ref)
    stats = srv.stats()
    assert stats["pattern"] == PATTERN and stats["last_forward"]["ran"] == [i for i, c in enumerate(PATTERN) if c == "F"]


# ---- leading S -----------------------------------------------------------------------------


def test_leading_shared_is_promoted_where_upstream_fails(servers, gpu_models, tmp_path):
    promoted = servers("ic_leading_s", MODEL, *DUMMY, *IC, "--index-cache-pattern", "SSFSSSFS")
    assert "PROMOTED" in promoted.log.read_text()
    got = run_all(promoted, PROMPTS[:2])
    check_counters(promoted, "FSFSSSFS")
    explicit = servers("ic_fsfsssfs", MODEL, *DUMMY, *IC, "--index-cache-pattern", "FSFSSSFS")
    assert_same(got, run_all(explicit, PROMPTS[:2]))

    # Upstream with the same pattern: layer 0 is skip-topk with no source.
    upstream = Server(gpu_models[MODEL], [*GPU_ARGS, *DUMMY, *DSA, "--json-model-override-args",
                      json.dumps({"indexer_types": None, "index_topk_pattern": "SSFSSSFS"})],
                      log=tmp_path / "dsa_leading_s.log", device="cuda", startup_timeout=600)
    failure = None
    try:
        with upstream:
            upstream.generate(PROMPTS[0], 4)
    except ServerError as e:
        failure = str(e)
    print("upstream dsa with SSFSSSFS:", (failure or "no failure")[-1500:])
    assert failure is not None, "upstream dsa served a leading-S pattern; the comparison premise changed"


def test_leading_shared_promoted_on_a_checkpoint_with_indexer_weights(servers):
    # deepseek-tiny has indexer weights on every layer: plan and server promote layer 0.
    srv = servers("ic_ds_leading_s", "deepseek-tiny", *IC, "--index-cache-pattern", "SSFSSF")
    assert "PROMOTED" in srv.log.read_text()
    out = srv.generate(PROMPTS[0], NEW_TOKENS)
    assert len(out["output_ids"]) == NEW_TOKENS
    check_counters(srv, "FSFSSF")


# ---- MTP (EAGLE over the checkpoint's NextN layer) ----------------------------------------

MTP = ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", "2", "--speculative-eagle-topk", "1",
       "--speculative-num-draft-tokens", "3"]


def accept_length(srv: Server, prompts) -> tuple:
    """Greedy tokens, prompt and output log-probabilities, and SGLang's accept length (tokens
    per verify step) over the prompts. The output log-probabilities come from the target's
    verify forwards, where Shared layers reuse the top-k under speculative decoding."""
    srv.flush_cache()
    rows, done, verifies = [], 0, 0
    for p in prompts:
        r = srv.generate(p, NEW_TOKENS, logprobs=True)
        meta = r["meta_info"]
        rows.append((r["output_ids"], [x[0] for x in meta["input_token_logprobs"][1:]],
                     [x[0] for x in meta["output_token_logprobs"]]))
        done += meta["completion_tokens"]
        verifies += meta["spec_verify_ct"]
    return rows, done / verifies


def test_mtp_with_a_shared_pattern_equals_upstream(servers, gpu_models, tmp_path_factory):
    """The draft (NextN) runs its own indexer; the target shares: same tokens, prompt
    log-probabilities bit-identical, verify-step log-probabilities within 1e-3, and the same
    accept length as upstream's native sharing with the same speculative flags."""
    from sglang_indexcache.tiny_model import make_shape

    mtp_model = make_shape("glm-5.2", tmp_path_factory.mktemp("mtp") / "glm-5.2-8l-mtp", num_layers=8,
                           overrides={"n_routed_experts": 16, "num_nextn_predict_layers": 1})
    gpu_models["glm-5.2-8l-mtp"] = str(mtp_model)
    native = servers("dsa_native_mtp", "glm-5.2-8l-mtp", *DUMMY, *DSA, *MTP, "--json-model-override-args",
                     json.dumps({"indexer_types": None, "index_topk_pattern": PATTERN}))
    ref, ref_accept = accept_length(native, PROMPTS[:3])
    ours = servers("ic_pattern_mtp", "glm-5.2-8l-mtp", *DUMMY, *IC, *MTP, "--index-cache-pattern", PATTERN)
    log = ours.log.read_text()
    assert "IndexCache, draft model:" in log and "draft layer: runs its own indexer" in log
    got, accept = accept_length(ours, PROMPTS[:3])
    worst_out = max(abs(x - y) for (_, _, a), (_, _, b) in zip(got, ref) for x, y in zip(a, b))
    print(f"MTP accept length: dsa native {ref_accept:.3f}, indexcache {accept:.3f}; "
          f"verify log-prob max diff {worst_out:.2e}")
    assert_same([(t, lp) for t, lp, _ in got], [(t, lp) for t, lp, _ in ref])
    assert worst_out <= 1e-3
    assert abs(accept - ref_accept) <= 0.05 * ref_accept
    stats = ours.stats()  # the target's counters: verify forwards checked like any other
    assert stats["pattern"] == PATTERN and stats["indexer_skips"] == PATTERN.count("S") * stats["forwards"]


# ---- hierarchical cache (host memory) -------------------------------------------------------

HICACHE = ["--enable-hierarchical-cache", "--hicache-ratio", "8", "--hicache-write-policy", "write_through",
           "--max-total-tokens", "16384"]
HOST_POOL = re.compile(r"Allocating (\S+) hierarchical KV host pool: (\d+) tokens, ([0-9.]+) GB host memory")
HOST_INDEX = re.compile(r"Allocating ([0-9.]+) GB host memory for DSA indexer")


def test_hierarchical_cache_reload_equals_a_device_hit(servers, gpu_models):
    """--enable-hierarchical-cache: SGLang moves the indexer's index-K pages with the KV pages
    (mem_cache/pool_host/dsa.py), for the layers that own them, which under indexcache are the
    Full layers. A prefix evicted from the GPU pool and loaded back from host memory gives the
    same log-probabilities for the new tokens after it as the same prefix hit on the GPU
    (index-K lost on the way would change every Full layer's top-k there). The host pools'
    bytes per token are `plan`'s (latent rows on every layer, index-K on the Full ones)."""
    from sglang_indexcache.kv_memory import kv_memory
    from sglang_indexcache.schedule import IndexCacheFlags, build_schedule

    srv = servers("ic_pattern_hicache", MODEL, *DUMMY, *IC, *HICACHE, "--index-cache-pattern", PATTERN)
    head, tail = prompt(31, 2600), prompt(32, 700)

    def tail_logprobs():  # log-probabilities of the tail's tokens only (the head is cached)
        r = srv.post("/generate", {"input_ids": head + tail, "return_logprob": True, "logprob_start_len": len(head),
                                   "sampling_params": {"max_new_tokens": 4, "temperature": 0.0, "ignore_eos": True}})
        return r["meta_info"], [x[0] for x in r["meta_info"]["input_token_logprobs"] if x[0] is not None]

    srv.flush_cache()
    srv.generate(head, 1)
    meta, on_gpu = tail_logprobs()
    print("device hit:", meta.get("cached_tokens"), meta.get("cached_tokens_details"))
    assert meta["cached_tokens"] >= 2560
    for seed in range(40, 45):  # 5 x 4000 tokens through a 16384-token GPU pool: the head is evicted
        srv.generate(prompt(seed, 4000), 1)
    meta, reloaded = tail_logprobs()
    details = meta.get("cached_tokens_details") or {}
    print("after eviction:", meta.get("cached_tokens"), details)
    assert details.get("host", 0) >= 2560, f"the prefix was not loaded back from host memory: {meta}"
    worst = max(abs(x - y) for x, y in zip(on_gpu, reloaded))
    print(f"tail log-prob max diff, device hit vs host reload: {worst:.2e}")
    assert len(on_gpu) == len(reloaded) >= len(tail) - 1 and worst == 0.0
    check_counters(srv, PATTERN)

    log = srv.log.read_text()
    pools, index = HOST_POOL.findall(log), HOST_INDEX.findall(log)
    print("host pools:", pools, "index-K GB:", index)
    assert len(pools) == 1 and len(index) == 1, (pools, index)
    tokens, gb = int(pools[0][1]), float(pools[0][2]) + float(index[0])
    cfg = json.loads((Path(gpu_models[MODEL]) / "config.json").read_text())
    plan = kv_memory(build_schedule(8, {}, flags=IndexCacheFlags(pattern=PATTERN)), kv_lora_rank=cfg["kv_lora_rank"],
                     rope_dim=cfg["qk_rope_head_dim"], index_head_dim=cfg["index_head_dim"])
    per_token = gb * 1e9 / tokens
    print(f"host bytes per token: {per_token:.0f} from SGLang's log (two values rounded to 0.01 GB), "
          f"plan {plan['bytes_per_token']} (all-Full {plan['bytes_per_token_all_full']})")
    assert abs(per_token - plan["bytes_per_token"]) <= 0.01e9 / tokens + 1


# ---- fail closed under an injected fault -----------------------------------------------------


FAULT_MESSAGES = {
    "previous": "IndexCacheError: layer 1 (Shared)",  # the first forward has no previous one: "no top-k"
    "foreign": "IndexCacheError: layer 1 (Shared) was handed the top-k of layer 0 from forward",
    "none": "IndexCacheError: layer 1 (Shared) has no top-k in forward",
    "shape": "IndexCacheError: layer 1 (Shared): layer 0's top-k covers",
    "later": "IndexCacheError: layer 1 (Shared) was handed the top-k of layer 2",
}


@pytest.mark.parametrize("fault", list(FAULT_MESSAGES))
def test_injected_stale_source_stops_the_server_naming_the_layer(gpu_models, tmp_path, fault):
    """SGLANG_INDEXCACHE_FAULT hands every Shared layer a wrong source (through the store the
    CUDA check reads): the forward raises IndexCacheError naming the layer and the launcher
    exits non-zero, at startup (CUDA graph capture runs the check) or at the first request,
    never serving a token from the faulty forward."""
    from sglang_indexcache.backend.store import FAULT_ENV

    srv = Server(gpu_models[MODEL], [*GPU_ARGS, *DUMMY, *IC, "--index-cache-pattern", PATTERN],
                 log=tmp_path / "fault.log", device="cuda", startup_timeout=600)
    srv.env[FAULT_ENV] = fault
    srv.env["SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION"] = "0"
    served = None
    try:
        try:
            srv.start()
        except ServerError as e:  # capture or warm-up ran the check: the launcher exited
            print("fault at startup:", str(e)[-300:])
        else:
            try:
                served = srv.generate(PROMPTS[0], 4)
            except (ServerError, OSError) as e:
                print("fault at the first request:", str(e)[-300:])
        code = srv.proc.wait(timeout=120)  # it exits by itself
    finally:
        srv.stop()
    assert served is None and code != 0
    log = srv.log.read_text(errors="replace")
    assert FAULT_MESSAGES[fault] in log, log[-3000:]
