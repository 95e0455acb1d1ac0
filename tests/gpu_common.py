"""What the GPU test modules share (`test_gpu.py`, `test_gpu_serving.py`, `test_gpu_parallel.py`):
the launch arguments, the models (GLM-5.2's attention dimensions, 8 layers, dummy weights), the
prompts, the module-scoped server pool (at most two live; each module that asks for `servers`
gets its own), and the comparisons (greedy tokens and prompt log-probabilities).

Why not the tiny random-weight presets: on the H200 (2026-11-24) they gave different tokens for
two configurations that run the same kernels (dsa vs indexcache all-Full, CUDA graphs on vs off, a
radix hit vs a cold run) - an init-0.6 model amplifies SGLang's run-to-run GPU nondeterminism into
other tokens, and SGLang refuses `--enable-deterministic-inference` for DSA. The GLM-5.2-shaped
model gave identical tokens and log-probabilities for dsa vs indexcache.
"""

from __future__ import annotations

import json
import random

import pytest

from sglang_indexcache.server import Server

NEW_TOKENS = 32
# SGLang picks the DSA kernels for the KV dtype (the FP8 test runs so) ...
GPU_ARGS_AUTO_DSA = [
    "--dtype", "bfloat16",
    "--mem-fraction-static", "0.3",
    "--cuda-graph-max-bs-decode", "8",
    "--max-running-requests", "8",
]
# ... or, for bf16, sparse MLA is forced (FA3-free bundles have no dense path to pick)
GPU_ARGS = [*GPU_ARGS_AUTO_DSA, "--dsa-prefill-backend", "flashmla_sparse", "--dsa-decode-backend", "flashmla_sparse"]
IC = ["--attention-backend", "indexcache"]
DSA = ["--attention-backend", "dsa"]
MODEL = "glm-5.2-8l"
DUMMY = ["--load-format", "dummy"]
PATTERN = "FSSFSSFS"
MAX_LIVE_SERVERS = 2


def prompt(seed: int, n: int = 300) -> list:
    rng = random.Random(seed)
    return [rng.randrange(5, 1000) for _ in range(n)]


# SGLang's GPU top-k kernels need index_topk == 2048 (the tiny presets use 32 for CPU
# tests), so the GPU copies of the tiny models take 2048 and prompts are longer than that:
# every query past position 2047 is sparse; the 300-token prompt stays dense.
GPU_TOPK = 2048
PROMPTS = [prompt(s, n) for s, n in ((1, 2600), (2, 3100), (3, 4500), (4, 300))]


@pytest.fixture(scope="module")
def gpu_models(models, tmp_path_factory):
    import shutil

    from sglang_indexcache.tiny_model import make_shape

    root = tmp_path_factory.mktemp("gpu-models")
    out = dict(models)
    for name in ("deepseek-tiny",):
        dst = root / name
        shutil.copytree(models[name], dst)
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(index_topk=GPU_TOPK, max_position_embeddings=16384)
        (dst / "config.json").write_text(json.dumps(cfg, indent=2))
        out[name] = str(dst)
    # GLM-5.2's attention and indexer dimensions (64 heads, q_lora 2048, MLA 512+64, index
    # 32x128, top-k 2048) and its declared schedule; 8 layers and 16 experts to load fast.
    glm5 = make_shape("glm-5.2", root / "glm-5.2-8l", num_layers=8, overrides={"n_routed_experts": 16})
    return {**out, "glm-5.2-8l": str(glm5)}


@pytest.fixture(scope="module")
def servers(gpu_models, tmp_path_factory, monkeypatch_module):
    from sglang_indexcache.bench.common import dense_prefill_env

    for key, value in dense_prefill_env().items():  # no FA3 in an offline bundle: sparse MLA only
        monkeypatch_module.setenv(key, value)
    live = {}
    logs = tmp_path_factory.mktemp("gpu-servers")

    def get(name: str, model: str, *args: str, base: list = GPU_ARGS, env: dict | None = None) -> Server:
        if name in live:
            live[name] = live.pop(name)
            return live[name]
        while len(live) >= MAX_LIVE_SERVERS:
            live.pop(next(iter(live))).stop()
        srv = Server(gpu_models[model], [*base, *args], log=logs / f"{name}.log", device="cuda",
                     stats_file=logs / f"{name}.json", startup_timeout=600, env=env)
        live[name] = srv.start()
        return srv

    yield get
    for srv in live.values():
        srv.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def run_all(srv: Server, prompts=PROMPTS) -> list:
    """Greedy tokens and prompt logprobs for each prompt, radix cache flushed first."""
    srv.flush_cache()
    out = []
    for p in prompts:
        r = srv.generate(p, NEW_TOKENS, logprobs=True)
        out.append((r["output_ids"], [x[0] for x in r["meta_info"]["input_token_logprobs"][1:]]))
    return out


def assert_same(a: list, b: list, logprob_tol: float = 0.0) -> None:
    for i, ((ta, la), (tb, lb)) in enumerate(zip(a, b)):
        assert ta == tb, f"prompt {i}: tokens differ\n{ta}\n{tb}"
        worst = max(abs(x - y) for x, y in zip(la, lb))
        assert worst <= logprob_tol, f"prompt {i}: prompt logprob max diff {worst}"


def check_counters(srv: Server, pattern: str) -> None:
    stats = srv.stats()
    assert stats["pattern"] == pattern
    full, shared = pattern.count("F"), pattern.count("S")
    assert stats["indexer_runs"] == full * stats["forwards"]
    assert stats["indexer_skips"] == shared * stats["forwards"]
    # forwards the hook checked layer by layer (eager, and each CUDA graph capture) exist
    # besides the replays, which add the counts seen at their graph's capture
    assert stats["forwards"] > stats["graph_replays"] >= 0
    for key, (runs, skips) in stats["graph_counts"].items():
        assert (runs, skips) == (full, shared), (key, runs, skips)
