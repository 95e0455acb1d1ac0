"""The sample-filter-select top-k (`backend/ops/topk.py`) and the top-k kernel benchmark.

On CPU the Triton kernel runs under Triton's interpreter, in a subprocess (TRITON_INTERPRET
must be set before triton is imported, and must not leak into the servers other tests
start); each case is checked against torch.topk, ties compared as values. The inputs are
built so that every path of the kernel runs: short rows, rows kept whole by the filter,
the sampled threshold, and both ways the sample can mislead it (the whole-row fallback).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sglang_indexcache.bench.topk import make_scores, mismatched_rows

HERE = Path(__file__).resolve()


def _cases():
    """(name, scores, lengths, k, row_starts, offsets): every path of the kernel (SAMPLE 1024, cap max(4k, 1024))."""
    from sglang_indexcache.backend.ops.topk import SAMPLE

    g = torch.Generator().manual_seed(0)
    n = [10, 64, 65, 200, 1000, 1024, 1025, 3000, 5000]  # k = 64: short, whole, sampled
    w = max(n) + 50
    yield "normal", torch.randn(len(n), w, generator=g), torch.tensor(n), 64, None, None
    yield "ties", torch.randint(0, 5, (len(n), w), generator=g).float(), torch.tensor(n), 64, None, None
    yield ("starts and offsets", torch.randn(len(n), w, generator=g), torch.tensor(n), 64,
           torch.randint(0, 50, (len(n),), generator=g), torch.arange(len(n)) * 100000)
    rows = torch.full((4, 5000), 1.0)  # every score equal: the filter keeps all -> whole-row select
    at = torch.arange(SAMPLE) * 5000 // SAMPLE
    rows[1] = 5.0
    rows[1, at] = -5.0  # the sample sees only the smallest: the filter keeps too many
    rows[2] = -5.0
    rows[2, at] = 5.0 + torch.rand(SAMPLE, generator=g)  # the sample sees only the largest: too few
    rows[3] = torch.arange(5000).float()  # sorted by position
    yield "misleading samples", rows, torch.tensor([5000] * 4), 64, None, None
    zeros = torch.randn(4, 3000, generator=g)
    zeros[:, ::7], zeros[:, 1::7] = 0.0, -0.0  # +0 and -0: equal values, different bits
    yield "signed zeros", zeros, torch.tensor([3000, 2999, 0, 1]), 64, None, None
    s, lengths = make_scores(3, 9000, "indexer", "cpu")  # SGLang's k, past the cap
    yield "indexer k 2048", s, lengths, 2048, None, None


def _check(scores, lengths, k, starts, offsets, got) -> list:
    errors = []
    for r in range(scores.shape[0]):
        s0 = 0 if starts is None else int(starts[r])
        n, off = int(lengths[r]), 0 if offsets is None else int(offsets[r])
        row = scores[r, s0:s0 + n]
        if n <= k:
            want = torch.cat([torch.arange(n, dtype=torch.int32) + off, torch.full((k - n,), -1, dtype=torch.int32)])
            if not torch.equal(got[r], want):
                errors.append(f"row {r} (length {n} <= k): {got[r][:8].tolist()}...")
            continue
        cols = (got[r] - off).long()
        if cols.min() < 0 or cols.max() >= n or cols.unique().numel() != k:
            errors.append(f"row {r}: columns out of range or repeated")
        elif not torch.equal(row[cols].sort(descending=True).values, row.topk(k).values):
            errors.append(f"row {r}: kept values differ from torch.topk")
    return errors


def _run_interpreted() -> int:
    """Under TRITON_INTERPRET=1 (the subprocess): every case, one JSON line of errors per case."""
    from sglang_indexcache.backend.ops.topk import filter_topk

    failed = 0
    for name, scores, lengths, k, starts, offsets in _cases():
        got = filter_topk(scores, lengths, k, row_starts=starts, offsets=offsets, programs=3)
        errors = _check(scores, lengths, k, starts, offsets, got)
        failed += bool(errors)
        print(json.dumps({"case": name, "rows": scores.shape[0], "errors": errors}), flush=True)
    return 1 if failed else 0


def test_filter_topk_equals_torch_topk_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    p = subprocess.run([sys.executable, str(HERE), "--interpreted"], env=env, capture_output=True, text=True,
                       timeout=600, cwd=HERE.parents[1])
    cases = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert [c["case"] for c in cases] == [c[0] for c in _cases()], p.stdout + p.stderr[-3000:]
    assert all(not c["errors"] for c in cases), json.dumps(cases, indent=1)
    assert p.returncode == 0, p.stderr[-3000:]


def test_filter_topk_refuses_what_it_cannot_select():
    from sglang_indexcache.backend.ops.topk import filter_topk

    with pytest.raises(ValueError, match="float32"):
        filter_topk(torch.zeros(2, 8, dtype=torch.bfloat16), torch.tensor([8, 8]), 4)
    with pytest.raises(ValueError, match="unit column stride"):
        filter_topk(torch.zeros(8, 2).T, torch.tensor([8, 8]), 4)
    with pytest.raises(ValueError, match="power of two"):
        filter_topk(torch.zeros(2, 8), torch.tensor([8, 8]), 3)


@pytest.mark.parametrize("k,starts,offsets", [(2048, False, True), (2048, True, True), (64, False, False)])
def test_filter_topk_compiles_for_hopper(k, starts, offsets):
    """The interpreter runs Python, not the GPU compiler: compile the kernel for sm_90 (H100,
    H200) with the locked Triton, which needs no GPU, so a construct only the interpreter
    accepts fails here, in CI, and not first on a rented GPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sglang_indexcache.backend.ops.topk import BLOCK, SAMPLE, _filter_topk_kernel as fn

    cap = max(4 * k, SAMPLE)
    ptr, i32 = "*i32", "i32"
    sig = {"scores": "*fp32", "stride_s": i32, "lengths": ptr, "starts": ptr, "offsets": ptr, "out": ptr,
           "stride_o": i32, "buf_keys": ptr, "buf_cols": ptr, "rows": i32}
    const = {"K": k, "CAP": cap, "SAMPLE": SAMPLE, "BLOCK": min(BLOCK, cap), "HAS_STARTS": starts,
             "HAS_OFFSETS": offsets}
    assert fn.arg_names == [*sig, *const]
    sig.update({name: "constexpr" for name in const})
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(n),): v for n, v in const.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
    assert len(compiled.asm["cubin"]) > 0


def test_mismatched_rows_counts_every_kind_of_wrong_row():
    scores, lengths = make_scores(6, 500, "normal", "cpu", seed=1)
    k = 32
    good = scores.masked_fill(torch.arange(scores.shape[1])[None] >= lengths[:, None], float("-inf")).topk(k).indices
    good = good.to(torch.int32)
    assert mismatched_rows(scores, lengths, k, good) == 0
    bad = good.clone()
    bad[0, 0] = int(scores[0, :lengths[0]].argmin())  # a smaller value kept
    bad[1, 1] = bad[1, 0]  # a column twice
    bad[2, 2] = -1  # a hole
    bad[3, 3] = int(lengths[3])  # past the row's length
    assert mismatched_rows(scores, lengths, k, bad) == 4
    ties = torch.zeros(1, 100)  # equal values: any 32 distinct columns are right
    assert mismatched_rows(ties, torch.tensor([100], dtype=torch.int32), k,
                           torch.arange(50, 82, dtype=torch.int32)[None]) == 0


def test_bench_topk_on_cpu_writes_results_table_and_plot(tmp_path):
    from sglang_indexcache.bench.__main__ import main

    assert main(["topk", "--out", str(tmp_path), "--device", "cpu", "--rows", "1", "8", "--prefix", "600",
                 "--k", "64", "--repeats", "2", "--dist", "indexer", "bf16"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["workload"] == "topk" and len(res["shapes"]) == 4
    for e in res["shapes"]:
        assert e["impls"]["torch"]["mismatched_rows"] == 0 and e["impls"]["torch"]["ms"] > 0
    assert (tmp_path / "topk.png").stat().st_size > 0
    assert main(["report", str(tmp_path / "results.json")]) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("rows", [1, 2048])
@pytest.mark.parametrize("dist", ["indexer", "bf16"])
def test_filter_topk_equals_torch_topk_on_the_gpu(rows, dist):
    """SGLang's shape (k 2048, a 122,880-token prefix): the kept values equal torch.topk's."""
    from sglang_indexcache.backend.ops.topk import filter_topk

    scores, lengths = make_scores(rows, 122880, dist, "cuda")
    assert mismatched_rows(scores, lengths, 2048, filter_topk(scores, lengths, 2048)) == 0


if __name__ == "__main__" and sys.argv[1:] == ["--interpreted"]:
    sys.exit(_run_interpreted())
