"""Tensor and pipeline parallelism on SGLang's CPU engine (gloo process groups), tiny model.

SGLang 0.5.23 starts `--tp-size 2` on CPU only with our `integration/cpu_parallel.py` hook
(no PyNccl there) and `SGLANG_CPU_OMP_THREADS_BIND` (one core per rank); `--pp-size 2` needs
only the latter. deepseek-tiny has 6 layers, indexer weights on each, and PP 2 splits them
0-2 | 3-5. Counters: one stats file per rank (`PATH.tp{r}-pp{s}`), each counting its own
layers.

A Shared layer at a stage start is checked under `recompute` (promoted to Full on its stage,
never reading a tensor from the other stage), under `transfer` (it stays Shared and reads the
top-k SGLang's proxy tensors carried over from stage 0, received for that forward) and under
`--index-cache-pp-handoff align` (the partition `plan` prints, installed as SGLang's
`SGLANG_PP_LAYER_PARTITION`: no Shared stage start at all).
"""

from __future__ import annotations

import json
import random

import pytest

from sglang_indexcache.server import Server

pytestmark = pytest.mark.engine

ARGS = ["--dtype", "float32", "--max-total-tokens", "8192", "--attention-backend", "indexcache", "--sleep-on-idle"]
RANKS = {"SGLANG_CPU_OMP_THREADS_BIND": "0|1"}  # one core per rank on a 2-core machine


def prompts() -> list:
    rng = random.Random(0)
    return [[rng.randrange(10, 1000) for _ in range(n)] for n in (200, 500)]


def generate(srv: Server) -> list:
    return [srv.generate(p, 16)["output_ids"] for p in prompts()]


def rank_stats(stats_file, tp: int, pp: int) -> dict:
    return json.loads(open(f"{stats_file}.tp{tp}-pp{pp}").read())


PLANS = {
    # the single-process reference of the pattern PP 2 runs under recompute: layer 3
    # (stage 1's first layer under SGLang's even split 3|3) promoted
    "solo": (["--index-cache-pattern", "FSSFFS"], {}),
    "pp2": (["--index-cache-pattern", "FSSSFS", "--pp-size", "2", "--index-cache-pp-handoff", "recompute"], {}),
    "tp2": (["--index-cache-pattern", "FSSFFS", "--tp-size", "2"], {}),
    # --index-cache-pp-handoff align: the partition `plan` prints for FSSSFS at PP 2 (stage 1
    # starts on Full layer 4), installed by the ModelConfig hook: no promotion
    "solo_fsssfs": (["--index-cache-pattern", "FSSSFS"], {}),
    "pp2_aligned": (["--index-cache-pattern", "FSSSFS", "--pp-size", "2", "--index-cache-pp-handoff", "align"], {}),
    # --index-cache-pp-handoff transfer: layer 3 (stage 1's first) stays Shared, source layer 0
    "pp2_transfer": (["--index-cache-pattern", "FSSSFS", "--pp-size", "2", "--index-cache-pp-handoff", "transfer"], {}),
}


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    """run(name) -> (tokens, stats file, log text); each server started once, alone (the
    ranks take both cores), on first use."""
    logs = tmp_path_factory.mktemp("parallel")
    done = {}

    def run(name: str):
        if name not in done:
            extra, env = PLANS[name]
            srv = Server(models["deepseek-tiny"], [*ARGS, *extra], log=logs / f"{name}.log",
                         stats_file=logs / f"{name}.json", startup_timeout=600)
            srv.env.update({**RANKS, **env})
            with srv:
                done[name] = (generate(srv), logs / f"{name}.json", (logs / f"{name}.log").read_text(errors="replace"))
        return done[name]

    return run


def test_pipeline_stage_starting_on_shared_is_promoted_and_equals_single_process(runs):
    tokens, stats, log = runs("pp2")
    assert tokens == runs("solo")[0]
    assert "stage 1: layers 3-5" in log and "Promoted" in log
    s0, s1 = rank_stats(stats, 0, 0), rank_stats(stats, 0, 1)
    # each stage counts its own layers only; layer 3 ran its indexer on stage 1
    assert s0["last_forward"]["ran"] == [0] and set(s0["last_forward"]["reused"]) == {"1", "2"}
    # stage 1's only Shared layer reads layer 4's top-k, made on its own stage
    assert s1["last_forward"]["ran"] == [3, 4] and s1["last_forward"]["reused"] == {"5": 4}


def test_tensor_parallel_equals_single_process(runs):
    tokens, stats, log = runs("tp2")
    assert tokens == runs("solo")[0]
    for tp in (0, 1):  # both ranks run the same layers, each on its share of the heads
        s = rank_stats(stats, tp, 0)
        assert s["last_forward"]["ran"] == [0, 3, 4], s
        assert s["last_forward"]["reused"] == {"1": 0, "2": 0, "5": 4}


def test_aligned_partition_needs_no_handoff_and_equals_single_process(runs):
    """--index-cache-pp-handoff align installs SGLANG_PP_LAYER_PARTITION=4,2 (what `plan
    --pp-size 2` prints for FSSSFS): stage 1 starts on the Full layer 4, so nothing is promoted
    and nothing crosses the boundary; SGLang's own stages follow it (the per-rank counters)."""
    from sglang_indexcache.pipeline import aligned_partition

    assert aligned_partition([c == "F" for c in "FSSSFS"], 2)["env"] == "SGLANG_PP_LAYER_PARTITION=4,2"
    tokens, stats, log = runs("pp2_aligned")
    assert tokens == runs("solo_fsssfs")[0]
    assert "pipeline handoff=align; stage 0: layers 0-3" in log and "SGLANG_PP_LAYER_PARTITION=4,2" in log
    assert "stage 1: layers 4-5" in log and "0 Promoted" in log
    s0, s1 = rank_stats(stats, 0, 0), rank_stats(stats, 0, 1)
    assert s0["last_forward"]["ran"] == [0] and set(s0["last_forward"]["reused"]) == {"1", "2", "3"}
    assert s1["last_forward"]["ran"] == [4] and s1["last_forward"]["reused"] == {"5": 4}


def test_transfer_hands_stage_one_the_received_topk_and_equals_single_process(runs):
    """--index-cache-pp-handoff transfer under SGLang's even split 3|3: layer 3 stays Shared,
    its source (layer 0) is on stage 0, and SGLang's proxy tensors carry that top-k over; stage 1
    runs no indexer for layer 3 and reads the tensor it received in this forward. Tokens equal
    the single process running FSSSFS (no promotion anywhere)."""
    tokens, stats, log = runs("pp2_transfer")
    assert tokens == runs("solo_fsssfs")[0]
    assert "pipeline handoff=transfer; stage 0: layers 0-2" in log and "0 Promoted" in log
    s0, s1 = rank_stats(stats, 0, 0), rank_stats(stats, 0, 1)
    assert s0["last_forward"]["ran"] == [0] and s0["last_forward"]["received"] == []
    assert s1["last_forward"]["ran"] == [4] and s1["last_forward"]["received"] == [0]
    assert s1["last_forward"]["reused"] == {"3": 0, "5": 4}
