"""On 2 CUDA GPUs: `indexcache` under tensor and pipeline parallelism against SGLang's `dsa`.

The same GLM-5.2-dimension 8-layer dummy model and prompts as `test_gpu.py` (`gpu_common.py`);
equality means the same greedy tokens and bit-identical prompt log-probabilities.

  * TP 2: `--index-cache-pattern FSSFSSFS` == upstream's native sharing of that pattern at TP 2;
  * PP 2 (stages [0-3], [4-7]; layer 4, stage 1's first, is Shared in FSSFSSFS): under the
    default handoff (recompute) layer 4 runs PROMOTED, with no top-k from stage 0, and equals
    upstream's native sharing of the promoted pattern FSSFFSFS at PP 2; under transfer layer 4
    stays Shared on the top-k stage 0 sends and equals upstream's native sharing of FSSFSSFS at
    PP 2 (upstream sends the same tensor); the counters of each stage's rank show what ran where.
Skipped where torch sees fewer than 2 GPUs. The 2-GPU flags are the ones KINDS.md and DESIGN.md
name for the H200 pair (TP 2 stalls at startup without the all-reduce ones).
"""

from __future__ import annotations

import json

import pytest
import torch

from gpu_common import DSA, DUMMY, GPU_ARGS, IC, MODEL, PROMPTS, assert_same, run_all

from sglang_indexcache.server import Server

pytestmark = [
    pytest.mark.gpu, pytest.mark.engine,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]

TWO_GPU_ARGS = ["--disable-custom-all-reduce", "--enforce-disable-flashinfer-allreduce-fusion"]
PATTERN = "FSSFSSFS"
PROMOTED = "FSSFFSFS"  # layer 4 starts stage 1 of PP 2


@pytest.fixture(scope="module", autouse=True)
def two_gpu_env():
    from sglang_indexcache.bench.common import dense_prefill_env

    mp = pytest.MonkeyPatch()
    for key, value in {**dense_prefill_env(), "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                       "NVSHMEM_DISABLE_NVLS": "1"}.items():
        mp.setenv(key, value)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory):
    from sglang_indexcache.tiny_model import make_shape

    return str(make_shape("glm-5.2", tmp_path_factory.mktemp("gpu2") / MODEL, num_layers=8,
                          overrides={"n_routed_experts": 16}))


def serve(model, tmp_path, name, *args, stats=False):
    return Server(model, [*GPU_ARGS, *TWO_GPU_ARGS, *DUMMY, *args], log=tmp_path / f"{name}.log", device="cuda",
                  stats_file=(tmp_path / f"{name}.json") if stats else None, startup_timeout=900)


def rank_stats(stats_file, ranks) -> dict:
    """The per-rank counter files (`backend/metrics.stats_path_for`: PATH.tp{r}-pp{s})."""
    return {f"tp{t}-pp{p}": json.loads(open(f"{stats_file}.tp{t}-pp{p}").read()) for t, p in ranks}


def side_by_side(gpu_model, tmp_path, name, parallel, native_pattern, ranks, ours_only=()):
    """Upstream `dsa` with `native_pattern` through its native sharing, then `indexcache
    --index-cache-pattern PATTERN`, both under the `parallel` flags (and ours with `ours_only`):
    the ours' tokens and log-probabilities must equal upstream's. Returns ours' per-rank
    counters and log."""
    native = json.dumps({"indexer_types": None, "index_topk_pattern": native_pattern})
    with serve(gpu_model, tmp_path, f"dsa_{name}", *DSA, *parallel, "--json-model-override-args", native) as srv:
        ref = run_all(srv, PROMPTS[:3])
    ours = serve(gpu_model, tmp_path, f"ic_{name}", *IC, *parallel, *ours_only, "--index-cache-pattern", PATTERN,
                 stats=True)
    with ours as srv:
        got = run_all(srv, PROMPTS[:3])
        log = srv.log.read_text()
    assert_same(got, ref)
    stats = rank_stats(ours.stats_file, ranks)
    print(f"{name} counters:", {k: (v["pattern"], v["indexer_runs"], v["indexer_skips"], v["forwards"])
                                for k, v in stats.items()})
    return stats, log


def test_tp2_pattern_equals_upstream_native_sharing(gpu_model, tmp_path):
    ranks, _ = side_by_side(gpu_model, tmp_path, "tp2", ["--tp-size", "2"], PATTERN, [(0, 0), (1, 0)])
    for v in ranks.values():
        assert v["pattern"] == PATTERN and v["indexer_skips"] == PATTERN.count("S") * v["forwards"] > 0


def test_pp2_stage_starting_on_a_shared_layer_is_promoted_and_equals_upstream(gpu_model, tmp_path):
    ranks, log = side_by_side(gpu_model, tmp_path, "pp2", ["--pp-size", "2"], PROMOTED, [(0, 0), (0, 1)])
    assert "PROMOTED" in log
    s0, s1 = ranks["tp0-pp0"], ranks["tp0-pp1"]
    # stage 0 runs layers 0-3 (F S S F), stage 1 layers 4-7 (F S F S, layer 4 promoted)
    assert s0["indexer_runs"] == 2 * s0["forwards"] and s0["indexer_skips"] == 2 * s0["forwards"]
    assert s1["indexer_runs"] == 2 * s1["forwards"] and s1["indexer_skips"] == 2 * s1["forwards"] > 0
    assert s0["pattern"] == s1["pattern"] == PROMOTED


def test_pp2_transfer_reads_the_received_topk_and_equals_upstream(gpu_model, tmp_path):
    ranks, log = side_by_side(gpu_model, tmp_path, "pp2_transfer", ["--pp-size", "2"], PATTERN, [(0, 0), (0, 1)],
                              ours_only=["--index-cache-pp-handoff", "transfer"])
    assert "pipeline handoff=transfer" in log
    s0, s1 = ranks["tp0-pp0"], ranks["tp0-pp1"]
    # stage 1 runs layers 4-7 (S S F S): layer 4 and 5 read layer 3's top-k, received from stage 0
    assert s1["indexer_runs"] == s1["forwards"] and s1["indexer_skips"] == 3 * s1["forwards"] > 0
    assert s1["last_forward"]["received"] == [3] and s0["last_forward"]["received"] == []
    assert s0["pattern"] == s1["pattern"] == PATTERN
