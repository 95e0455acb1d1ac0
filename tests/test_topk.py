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

from sglang_indexcache.bench.topk import fp16_bin, make_scores, mismatched_rows

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
    s, lengths = make_scores(2, 9000, "dummy", "cpu")  # dummy-weight magnitudes: 0 in fp16
    yield "dummy k 2048", s, lengths, 2048, None, None


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
        tune = {"block": 64, "warps": 4} if name == "ties" else {}  # many steps per pass
        got = filter_topk(scores, lengths, k, row_starts=starts, offsets=offsets, programs=3, **tune)
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
    with pytest.raises(ValueError, match="k must be a power of two"):
        filter_topk(torch.zeros(2, 8), torch.tensor([8, 8]), 3)
    with pytest.raises(ValueError, match="block must be a power of two"):
        filter_topk(torch.zeros(2, 8), torch.tensor([8, 8]), 4, block=100)


@pytest.mark.parametrize("k,starts,offsets,block,warps", [
    (2048, False, True, 2048, 8), (2048, True, True, 2048, 8), (64, False, False, 2048, 8),
    (2048, True, True, 1024, 4), (2048, True, True, 2048, 4), (2048, True, True, 4096, 8),  # bench topk's
    (2048, True, True, 2048, 16),
])
def test_filter_topk_compiles_for_hopper(k, starts, offsets, block, warps):
    """The interpreter runs Python, not the GPU compiler: compile the kernel for sm_90 (H100,
    H200) with the locked Triton, which needs no GPU, so a construct only the interpreter
    accepts fails here, in CI, and not first on a rented GPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sglang_indexcache.backend.ops.topk import SAMPLE, _filter_topk_kernel as fn

    cap = max(4 * k, SAMPLE)
    ptr, i32 = "*i32", "i32"
    sig = {"scores": "*fp32", "stride_s": i32, "lengths": ptr, "starts": ptr, "offsets": ptr, "out": ptr,
           "stride_o": i32, "buf_keys": ptr, "buf_cols": ptr, "rows": i32}
    const = {"K": k, "CAP": cap, "SAMPLE": SAMPLE, "BLOCK": min(block, cap), "HAS_STARTS": starts,
             "HAS_OFFSETS": offsets}
    assert fn.arg_names == [*sig, *const]
    sig.update({name: "constexpr" for name in const})
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(n),): v for n, v in const.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
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
                 "--k", "64", "--repeats", "2", "--dist", "indexer", "bf16", "dummy"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["workload"] == "topk" and len(res["shapes"]) == 6
    for e in res["shapes"]:
        assert e["impls"]["torch"]["mismatched_rows"] == 0 and e["impls"]["torch"]["ms"] > 0
    assert (tmp_path / "topk.png").stat().st_size > 0
    assert main(["report", str(tmp_path / "results.json")]) == 0
    with pytest.raises(SystemExit, match="--impls filter:1:2 fastest: choose from"):
        main(["topk", "--out", str(tmp_path), "--device", "cpu", "--impls", "torch", "filter:1:2", "fastest"])


# ---- the backend's use of it (backend/topk.py) -------------------------------------------


def _torch_select(scores, lengths, k, row_starts=None, offsets=None):
    """An independent selection with filter_topk's contract: torch.topk per row."""
    out = torch.full((scores.shape[0], k), -1, dtype=torch.int32)
    for r in range(scores.shape[0]):
        s0 = 0 if row_starts is None else int(row_starts[r])
        n = int(lengths[r])
        cols = torch.arange(n) if n <= k else scores[r, s0:s0 + n].topk(k).indices
        out[r, :cols.numel()] = cols.to(torch.int32) + (0 if offsets is None else int(offsets[r]))
    return out


class _Upstream:
    """SGLang's DSATopKBackend as the backend sees it: records what it was asked."""

    def __init__(self):
        self.asked = []

    def topk_transform(self, **kw):
        self.asked.append(kw)
        return "upstream"

    def is_sgl_kernel(self):
        return True


def _paged_case():
    g = torch.Generator().manual_seed(3)
    cu = torch.tensor([0, 3, 5], dtype=torch.int32)  # request 0: rows 0-2, request 1: rows 3-4
    lengths = torch.tensor([40, 41, 42, 20, 21], dtype=torch.int32)  # row 3, 4 shorter than k
    scores = torch.randn(5, 64, generator=g)
    table = torch.randint(0, 10_000, (2, 64), generator=g, dtype=torch.int32)  # page_size-1 slots
    return scores, lengths, cu, table


def test_paged_transform_maps_kept_positions_through_each_requests_page_table():
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, cu, table = _paged_case()
    topk = ExtendTopK(_Upstream(), select=_torch_select)
    got = topk.topk_transform(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
                              attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=cu)
    for r, req in enumerate([0, 0, 0, 1, 1]):
        n = int(lengths[r])
        pos = range(n) if n <= 32 else scores[r, :n].topk(32).indices.tolist()
        want = sorted(int(table[req, p]) for p in pos)
        assert sorted(x for x in got[r].tolist() if x >= 0) == want, r
        assert (got[r] == -1).sum() == max(0, 32 - n)
    assert topk.calls == 1 and topk.upstream.asked == []


def test_chunked_paged_call_reads_each_rows_request_table():
    """SGLang's row-chunked logits call the PAGED top-k with one 'request' per row: cu_seqlens
    [0, 1, ..., rows] and batch_idx_list naming each row's request in the page table."""
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, cu, table = _paged_case()
    rows = torch.arange(2, 5)  # a chunk: rows 2-4 (request 0, 1, 1)
    topk = ExtendTopK(_Upstream(), select=_torch_select)
    got = topk.topk_transform(
        logits=scores[rows], lengths=lengths[rows], topk=32, topk_transform_method=TopkTransformMethod.PAGED,
        attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=torch.arange(4, dtype=torch.int32),
        batch_idx_list=torch.tensor([0, 1, 1], dtype=torch.int32))
    whole = ExtendTopK(_Upstream(), select=_torch_select).topk_transform(
        logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
        attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=cu)
    assert torch.equal(got, whole[rows]) and topk.upstream.asked == []


def test_ragged_transform_adds_each_rows_offset():
    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, _, _ = _paged_case()
    offsets = torch.tensor([0, 0, 0, 1000, 1000], dtype=torch.int32)
    starts = torch.tensor([0, 1, 2, 5, 5], dtype=torch.int32)
    got = ExtendTopK(_Upstream(), select=_torch_select).topk_transform(
        logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.RAGGED,
        attn_metadata=None, topk_indices_offset=offsets, row_starts=starts)
    assert torch.equal(got, _torch_select(scores, lengths, 32, starts, offsets))
    assert (got[0] >= 0).all() and (got[3] >= 1000).sum() == 20


@pytest.mark.parametrize("change", ["unfused", "batch_idx_list", "ragged batch_idx_list", "topk 48", "no offsets",
                                    "fuse off"])
def test_every_other_call_goes_to_sglangs_top_k(change, monkeypatch):
    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, _, _ = _paged_case()
    kw = dict(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.RAGGED,
              attn_metadata=None, topk_indices_offset=torch.zeros(5, dtype=torch.int32))
    if change == "unfused":
        kw["force_unfused_topk"] = True
    elif change == "batch_idx_list":
        kw["batch_idx_list"] = [0]  # prefill context parallelism's list of requests
    elif change == "ragged batch_idx_list":
        kw["batch_idx_list"] = torch.zeros(5, dtype=torch.int32)
    elif change == "topk 48":
        kw["topk"] = 48
    elif change == "no offsets":
        kw["topk_indices_offset"] = None
    else:
        monkeypatch.setenv("SGLANG_DSA_FUSE_TOPK", "0")
    topk = ExtendTopK(_Upstream(), select=_torch_select)
    assert topk.topk_transform(**kw) == "upstream"
    assert topk.calls == 0 and len(topk.upstream.asked) == 1
    assert topk.is_sgl_kernel()  # the rest of SGLang's backend shows through


@pytest.mark.parametrize("change", ["ragged", "topk 4096", "unaligned rows", "unaligned start"])
def test_the_v2_route_takes_only_paged_calls_its_kernel_reads(change):
    """SGLANG_INDEXCACHE_TOPK=v2 adds PAGED extends to SGLang's v2 kernel; RAGGED calls already
    run it upstream, and a k above 2,048 or rows not 16-byte aligned are beyond the kernel."""
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, cu, table = _paged_case()
    kw = dict(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
              attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=cu)
    ours = ExtendTopK(_Upstream(), "v2", select=_torch_select).topk_transform(**kw)
    assert torch.equal(ours, ExtendTopK(_Upstream(), "filter", select=_torch_select).topk_transform(**kw))
    if change == "ragged":
        kw.update(topk_transform_method=TopkTransformMethod.RAGGED, topk_indices_offset=torch.zeros(5, dtype=torch.int32))
    elif change == "topk 4096":
        kw["topk"] = 4096
    elif change == "unaligned rows":
        kw["logits"] = torch.randn(5, 66)[:, :64]  # row stride 66 floats: not a multiple of 4
    else:
        kw["logits"] = torch.randn(5 * 64 + 1)[1:].view(5, 64)  # the first row 4 bytes past an aligned base
    topk = ExtendTopK(_Upstream(), "v2", select=_torch_select)
    assert topk.topk_transform(**kw) == "upstream" and topk.calls == 0


def test_an_unknown_top_k_kind_is_refused():
    from sglang_indexcache.backend.topk import ExtendTopK

    with pytest.raises(ValueError, match="top-k kind 'upstream': choose one of v2, filter"):
        ExtendTopK(_Upstream(), "upstream")


def test_the_top_k_choice_is_read_from_the_environment(monkeypatch):
    from sglang_indexcache.backend.topk import chosen

    monkeypatch.delenv("SGLANG_INDEXCACHE_TOPK", raising=False)
    assert chosen() == "upstream"
    for kind in ("v2", "filter"):
        monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", kind)
        assert chosen() == kind
    monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", "fast")
    with pytest.raises(ValueError, match="SGLANG_INDEXCACHE_TOPK='fast': choose one of upstream, v2, filter"):
        chosen()


@pytest.mark.parametrize("mode", ["EXTEND", "DECODE", "TARGET_VERIFY", "MIXED"])
def test_the_cuda_backend_hands_only_plain_extends_our_top_k(mode, monkeypatch):
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_indexer_metadata import DSAIndexerMetadata
    from sglang.srt.layers.attention.dsa.dsa_topk_backend import DSATopKBackend, TopkTransformMethod
    from sglang.srt.layers.attention.dsa_backend import DeepseekSparseAttnBackend
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    from sglang_indexcache.backend.gpu import IndexCacheDSABackend
    from sglang_indexcache.backend.topk import ExtendTopK

    upstream_md = DSAIndexerMetadata(attn_metadata=None, topk_transform_method=TopkTransformMethod.PAGED,
                                     topk_backend=DSATopKBackend.SGL_KERNEL)
    monkeypatch.setattr(DeepseekSparseAttnBackend, "get_indexer_metadata", lambda self, layer_id, fb: upstream_md)
    b = object.__new__(IndexCacheDSABackend)  # no GPU: only what the method reads
    b.extend_topk = ExtendTopK(DSATopKBackend.SGL_KERNEL)
    md = b.get_indexer_metadata(0, SimpleNamespace(forward_mode=ForwardMode[mode]))
    assert (md.topk_backend is b.extend_topk) == (mode == "EXTEND")
    assert md.topk_transform_method == TopkTransformMethod.PAGED
    b.extend_topk = None  # SGLANG_INDEXCACHE_TOPK unset: SGLang's metadata as it is
    assert b.get_indexer_metadata(0, SimpleNamespace(forward_mode=ForwardMode.EXTEND)) is upstream_md


def _threshold_bin_size(row: torch.Tensor, k: int) -> int:
    """How many of a row's scores share the fp16 top byte (sign, exponent, 2 mantissa bits:
    the coarse bin of SGLang's legacy top-k; the v2 kernel bins the same fp16 cast, more
    finely) of its k-th largest score."""
    return int((fp16_bin(row) == fp16_bin(row.topk(k).values[-1:])).sum())


@pytest.mark.parametrize("dist,stressed", [("indexer", False), ("dummy", True), ("offset", True)])
def test_the_stress_dists_overflow_a_coarse_fp16_bin(dist, stressed):
    """`--dist dummy` and `offset` exist to overflow the 4,096 candidates SGLang's legacy top-k
    keeps of its threshold bin (sglang#36807), `indexer` does not: at SGLang's shape (k 2,048,
    a 122,880-token row) the k-th score's fp16 bin holds more than 4,096 scores only for them.
    Under dummy weights every score is 0 in fp16."""
    scores, lengths = make_scores(1, 122880, dist, "cpu")
    row = scores[0, : int(lengths[0])]
    size = _threshold_bin_size(row, 2048)
    assert (size > 4096) == stressed, size
    if dist == "dummy":
        assert bool((row.half() == 0).all()) and row.abs().max() > 0


@pytest.mark.gpu
@pytest.mark.parametrize("rows", [1, 2048])
@pytest.mark.parametrize("dist", ["indexer", "bf16", "dummy", "offset"])
def test_filter_topk_equals_torch_topk_on_the_gpu(rows, dist):
    """SGLang's shape (k 2048, a 122,880-token prefix): the kept values equal torch.topk's."""
    from sglang_indexcache.backend.ops.topk import filter_topk

    scores, lengths = make_scores(rows, 122880, dist, "cuda")
    assert mismatched_rows(scores, lengths, 2048, filter_topk(scores, lengths, 2048)) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("dist", ["indexer", "dummy"])
def test_v2_select_keeps_torch_topks_set_inside_each_rows_window(dist):
    """SGLANG_INDEXCACHE_TOPK=v2's selection (SGLang's v2 kernel, ragged entry point) as the
    PAGED route calls it: windows starting at row_starts, positions relative to the window."""
    from sglang_indexcache.backend.topk import v2_select

    scores, lengths = make_scores(2048, 122880, dist, "cuda")
    starts = torch.randint(0, 64, (scores.shape[0],), dtype=torch.int32, device="cuda") * 4
    wide = torch.full((scores.shape[0], scores.shape[1] + 256), float("-inf"), device="cuda")
    cols = starts[:, None].long() + torch.arange(scores.shape[1], device="cuda")[None, :]
    wide.scatter_(1, cols, scores)  # row r's scores from column starts[r] on
    got = v2_select(wide, lengths, 2048, row_starts=starts)
    assert mismatched_rows(scores, lengths, 2048, got) == 0


if __name__ == "__main__" and sys.argv[1:] == ["--interpreted"]:
    sys.exit(_run_interpreted())
