"""End to end on CPU: the real SGLang server with `--attention-backend indexcache` in
float32, checked against transformers' eager models in float64 (see reference.py).

Each server is module-scoped and shared by the tests that need it. Prompts are random
token ids, 200 long (index_topk is 32), so every query past position 31 is sparse.
"""

from __future__ import annotations

import concurrent.futures as cf
import random
import subprocess
import sys

import pytest

from sglang_indexcache.server import Server, ServerError, cpu_env

import reference

pytestmark = pytest.mark.engine

PROMPT_LEN = 200
NEW_TOKENS = 32
# --sleep-on-idle: an idle scheduler otherwise spins a core, and this machine has two.
BASE_ARGS = ["--dtype", "float32", "--max-total-tokens", "16384", "--attention-backend", "indexcache", "--sleep-on-idle"]
MAX_LIVE_SERVERS = 2  # ~1.5 GB resident each
# Prompt log-probabilities, SGLang float32 (absorbed MLA) against transformers float64
# (expanded MLA). Observed at this weight scale (init std 0.6): max ~1e-2, mean ~5e-4.
LOGPROB_MAX_ABS = 0.05
LOGPROB_MEAN_ABS = 0.005


def prompt(seed: int, n: int = PROMPT_LEN) -> list:
    rng = random.Random(seed)
    return [rng.randrange(5, 1000) for _ in range(n)]


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory):
    """Servers keyed by name, started on first use; the least recently used one is stopped
    when more than MAX_LIVE_SERVERS would run (tests are ordered to reuse them)."""
    live = {}
    logs = tmp_path_factory.mktemp("servers")

    def get(name: str, model: str, *args: str) -> Server:
        if name in live:
            live[name] = live.pop(name)  # most recently used last
            return live[name]
        while len(live) >= MAX_LIVE_SERVERS:
            live.pop(next(iter(live))).stop()
        srv = Server(models[model], [*BASE_ARGS, *args], log=logs / f"{name}.log", stats_file=logs / f"{name}.json")
        live[name] = srv.start()
        return srv

    yield get
    for srv in live.values():
        srv.stop()


def check_against_reference(srv: Server, model_path, pattern: str, seed: int = 1) -> None:
    ref = reference.load(model_path, pattern)
    p = prompt(seed)
    out = srv.generate(p, NEW_TOKENS, logprobs=True)
    assert out["output_ids"] == reference.greedy(ref, p, NEW_TOKENS)
    ours = [x[0] for x in out["meta_info"]["input_token_logprobs"][1:]]
    theirs = reference.prompt_logprobs(ref, p)
    diffs = [abs(a - b) for a, b in zip(ours, theirs)]
    assert len(diffs) == PROMPT_LEN - 1
    # A position whose top-k sits on a near-tie may select one other key (float32 engine,
    # float64 reference): allow that on at most 2% of positions, bounded; the rest tight.
    outliers = [d for d in diffs if d >= LOGPROB_MAX_ABS]
    assert len(outliers) <= 0.02 * len(diffs) and max(diffs) < 0.5, sorted(diffs)[-5:]
    assert sum(diffs) / len(diffs) < LOGPROB_MEAN_ABS, sum(diffs) / len(diffs)


def check_counters(srv: Server, pattern: str) -> None:
    """The last forward ran the indexer on exactly the Full layers; Shared ones reused."""
    stats = srv.stats()
    assert stats["pattern"] == pattern
    full = [i for i, c in enumerate(pattern) if c == "F"]
    assert stats["last_forward"]["ran"] == full
    reused = stats["last_forward"]["reused"]
    assert sorted(int(k) for k in reused) == [i for i, c in enumerate(pattern) if c == "S"]
    for layer, source in reused.items():
        assert pattern[source] == "F" and set(pattern[source + 1 : int(layer)]) <= {"S"}
    assert stats["indexer_runs"] == len(full) * stats["forwards"]
    assert stats["indexer_skips"] == (len(pattern) - len(full)) * stats["forwards"]


# ---- agreement with transformers --------------------------------------------------------


def test_glm_all_full(servers, models):
    srv = servers("glm_full", "glm-tiny-full")
    check_against_reference(srv, models["glm-tiny-full"], "FFFFFFFF")
    check_counters(srv, "FFFFFFFF")


def test_chunked_prefill_equals_unchunked(servers):
    chunked = servers("glm_chunked", "glm-tiny", "--chunked-prefill-size", "64", "--disable-radix-cache")
    whole = servers("glm_no_radix", "glm-tiny", "--disable-radix-cache")
    p = prompt(21, 400)  # 7 chunks of 64 (SGLang's DSA pages are 64 tokens)
    a = chunked.generate(p, NEW_TOKENS, logprobs=True)
    b = whole.generate(p, NEW_TOKENS, logprobs=True)
    assert a["output_ids"] == b["output_ids"]
    la = [x[0] for x in a["meta_info"]["input_token_logprobs"][1:]]
    lb = [x[0] for x in b["meta_info"]["input_token_logprobs"][1:]]
    assert max(abs(x - y) for x, y in zip(la, lb)) < 1e-3


def test_glm_checkpoint_schedule_without_shared_indexer_weights(servers, models):
    srv = servers("glm_native", "glm-tiny")  # FFFSSSFS, from config.json (GLM-5.2's rule)
    check_against_reference(srv, models["glm-tiny"], "FFFSSSFS")
    check_counters(srv, "FFFSSSFS")


# ---- radix cache, chunked prefill, concurrency ----------------------------------------------


def test_radix_prefix_hit_equals_cold_run(servers):
    srv = servers("glm_native", "glm-tiny")
    cold = servers("glm_no_radix", "glm-tiny", "--disable-radix-cache")
    p, q = prompt(11, 300), prompt(12, 60)
    srv.flush_cache()
    srv.generate(p, 8)
    warm = srv.generate(p + q, NEW_TOKENS)
    assert warm["meta_info"]["cached_tokens"] > 0
    reference_run = cold.generate(p + q, NEW_TOKENS)
    assert reference_run["meta_info"]["cached_tokens"] == 0
    assert warm["output_ids"] == reference_run["output_ids"]


def test_concurrent_requests_equal_their_solo_runs(servers):
    srv = servers("glm_native", "glm-tiny")
    shared = prompt(31, 150)
    prompts = [shared[: 40 + 7 * i] + prompt(100 + i, 10 + 13 * i) for i in range(16)]
    solo = []
    for p in prompts:
        srv.flush_cache()
        solo.append(srv.generate(p, 16)["output_ids"])
    srv.flush_cache()
    with cf.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda p: srv.generate(p, 16)["output_ids"], prompts))
    assert together == solo


# ---- bad input ------------------------------------------------------------------------------


def test_request_longer_than_context_is_refused_and_server_keeps_serving(servers):
    srv = servers("glm_native", "glm-tiny")
    with pytest.raises(ServerError, match="HTTP 400"):
        srv.generate(prompt(41, 5000), 4)
    assert len(srv.generate(prompt(42, 50), 4)["output_ids"]) == 4


# ---- more patterns ------------------------------------------------------------------------


def test_glm_uniform_pattern_from_freq_flags(servers, models):
    srv = servers("glm_uniform", "glm-tiny-full", "--index-cache-freq", "2", "--index-cache-offset", "1")
    check_against_reference(srv, models["glm-tiny-full"], "FSFSFSFS")
    check_counters(srv, "FSFSFSFS")


def test_deepseek_all_full(servers, models):
    srv = servers("ds_full", "deepseek-tiny")
    check_against_reference(srv, models["deepseek-tiny"], "FFFFFF")
    check_counters(srv, "FFFFFF")


def test_deepseek_uniform_pattern(servers, models):
    srv = servers("ds_uniform", "deepseek-tiny", "--index-cache-pattern", "FSSFSS")
    check_against_reference(srv, models["deepseek-tiny"], "FSSFSS")
    check_counters(srv, "FSSFSS")


def test_deepseek_irregular_pattern(servers, models):
    srv = servers("ds_irregular", "deepseek-tiny", "--index-cache-pattern", "FFSSSF")
    check_against_reference(srv, models["deepseek-tiny"], "FFSSSF")
    check_counters(srv, "FFSSSF")


def test_deepseek_leading_shared_is_promoted(servers, models):
    srv = servers("ds_leading_s", "deepseek-tiny", "--index-cache-pattern", "SSFSSF")
    assert "PROMOTED" in srv.log.read_text()
    plan = subprocess.run(
        [sys.executable, "-m", "sglang_indexcache.cli", "plan", "--model-path", str(models["deepseek-tiny"]),
         "--pattern", "SSFSSF"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "pattern: FSFSSF" in plan
    assert any(line.split()[:3] == ["0", "0", "PROMOTED"] for line in plan.splitlines())
    check_against_reference(srv, models["deepseek-tiny"], "FSFSSF")
    check_counters(srv, "FSFSSF")
    # ... and it is the same model as the pattern with that F written out.
    other = servers("ds_irregular_2", "deepseek-tiny", "--index-cache-pattern", "FSFSSF")
    p = prompt(7)
    assert srv.generate(p, NEW_TOKENS)["output_ids"] == other.generate(p, NEW_TOKENS)["output_ids"]


# ---- bad input at launch --------------------------------------------------------------------


def test_invalid_pattern_exits_before_weights_load(models, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", "--model-path", str(models["glm-tiny-full"]), "--device", "cpu",
         *BASE_ARGS, "--index-cache-pattern", "FFSXSFSS"],
        env=cpu_env(), capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--index-cache-pattern" in out and "'X'" in out, out[-3000:]
    assert "Load weight begin" not in out
