"""The extend top-k choice (`backend/topk.py`: SGLang's v2 kernel for PAGED extends) and the
top-k kernel benchmark (`bench/topk.py`). On CPU: the routing, with an independent torch
selection standing in for the kernel, and the benchmark's checks; on a GPU (`gpu` marker):
the v2 selection against torch.topk.

(The Triton filter top-k these tests also covered until 2026-12-01 lost to SGLang's v2
kernel at every size and score distribution measured on an H200, and was removed; see the
README's top-k section.)
"""

from __future__ import annotations

import json

import pytest
import torch

from sglang_indexcache.bench.topk import fp16_bin, make_scores, mismatched_rows


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
    with pytest.raises(SystemExit, match="--impls filter fastest: choose from"):
        main(["topk", "--out", str(tmp_path), "--device", "cpu", "--impls", "torch", "filter", "fastest"])


# ---- the backend's use of it (backend/topk.py) -------------------------------------------


def _torch_select(scores, lengths, k, row_starts=None):
    """An independent selection with v2_select's contract: torch.topk per row, positions in
    the row's window, -1 padded."""
    out = torch.full((scores.shape[0], k), -1, dtype=torch.int32)
    for r in range(scores.shape[0]):
        s0 = 0 if row_starts is None else int(row_starts[r])
        n = int(lengths[r])
        cols = torch.arange(n) if n <= k else scores[r, s0:s0 + n].topk(k).indices
        out[r, :cols.numel()] = cols.to(torch.int32)
    return out


def _torch_select_paged(scores, lengths, k, table, row_index, row_starts=None):
    """An independent stand-in for v2_select_paged: _torch_select's positions, then each row's
    request's table (row_index[r]) at them, -1 kept."""
    cols = _torch_select(scores, lengths, k, row_starts=row_starts)
    out = torch.full_like(cols, -1)
    for r in range(cols.shape[0]):
        keep = cols[r] >= 0
        out[r, keep] = table[int(row_index[r]), cols[r, keep].long()]
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
    topk = ExtendTopK(_Upstream(), select=_torch_select, select_paged=_torch_select_paged)
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
    topk = ExtendTopK(_Upstream(), select=_torch_select, select_paged=_torch_select_paged)
    got = topk.topk_transform(
        logits=scores[rows], lengths=lengths[rows], topk=32, topk_transform_method=TopkTransformMethod.PAGED,
        attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=torch.arange(4, dtype=torch.int32),
        batch_idx_list=torch.tensor([0, 1, 1], dtype=torch.int32))
    whole = ExtendTopK(_Upstream(), select=_torch_select, select_paged=_torch_select_paged).topk_transform(
        logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
        attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=cu)
    assert torch.equal(got, whole[rows]) and topk.upstream.asked == []


def _map_route(scores, lengths, cu, table):
    """The `v2` kind's answer (selection, then `paged` in torch): the reference for `v2-paged`."""
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    ref = ExtendTopK(_Upstream(), "v2", select=_torch_select, select_paged=_torch_select_paged)
    out = ref.topk_transform(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
                             attn_metadata=SimpleNamespace(page_table_1=table, token_to_batch_idx=OWNER),
                             cu_seqlens_q_topk=cu)
    assert ref.calls == 1 and ref.fused_calls == 0  # `v2` never takes the fused kernel
    return out


OWNER = torch.tensor([0, 0, 0, 1, 1], dtype=torch.int32)  # _paged_case's rows' requests


@pytest.mark.parametrize("row_map", ["forward", "chunk"])
def test_v2_paged_reads_each_rows_request_from_sglangs_row_map(row_map):
    """`v2-paged` hands the kernel SGLang's row -> request map: the forward's
    `token_to_batch_idx`, or a chunked call's `batch_idx_list`; same slots as `v2`'s map."""
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, cu, table = _paged_case()
    seen = []

    def spy(logits, lengths, k, table, row_index, row_starts=None):
        seen.append(row_index)
        return _torch_select_paged(logits, lengths, k, table, row_index, row_starts=row_starts)

    topk = ExtendTopK(_Upstream(), select=_torch_select, select_paged=spy)
    kw = dict(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
              cu_seqlens_q_topk=cu, attn_metadata=SimpleNamespace(page_table_1=table, token_to_batch_idx=OWNER))
    if row_map == "chunk":  # the forward's map is not the one to read: the chunk names its rows
        kw.update(cu_seqlens_q_topk=torch.arange(6, dtype=torch.int32), batch_idx_list=OWNER.clone(),
                  attn_metadata=SimpleNamespace(page_table_1=table, token_to_batch_idx=OWNER.flip(0)))
    got = topk.topk_transform(**kw)
    assert torch.equal(got, _map_route(scores, lengths, cu, table))
    assert topk.calls == topk.fused_calls == 1 and topk.upstream.asked == []
    assert seen[0] is (kw["batch_idx_list"] if row_map == "chunk" else OWNER)


@pytest.mark.parametrize("change", ["no row map", "int64 row map", "short row map", "strided row map",
                                    "int64 lengths", "int64 row starts", "int64 table", "kind v2"])
def test_v2_paged_maps_in_torch_what_the_kernel_cannot_read(change):
    """A row map, lengths, row starts or table the fused kernel does not take (it reads int32
    vectors of one entry per row and an int32 table) goes through `v2`'s route: same slots."""
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, cu, table = _paged_case()
    owner, starts, kind = OWNER, None, "v2-paged"
    if change == "no row map":
        owner = None
    elif change == "int64 row map":
        owner = OWNER.long()
    elif change == "short row map":
        owner = OWNER[:4]
    elif change == "strided row map":
        owner = torch.stack([OWNER, OWNER], 1)[:, 0]
    elif change == "int64 lengths":
        lengths = lengths.long()
    elif change == "int64 row starts":
        starts = torch.zeros(5, dtype=torch.int64)
    elif change == "int64 table":
        table = table.long()
    else:
        kind = "v2"
    topk = ExtendTopK(_Upstream(), kind, select=_torch_select, select_paged=_torch_select_paged)
    got = topk.topk_transform(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
                              attn_metadata=SimpleNamespace(page_table_1=table, token_to_batch_idx=owner),
                              cu_seqlens_q_topk=cu, row_starts=starts)
    assert topk.calls == 1 and topk.fused_calls == 0 and topk.upstream.asked == []
    assert torch.equal(got, _map_route(scores, lengths.int(), cu, table.int()))


@pytest.mark.parametrize("change", ["unfused", "batch_idx_list", "topk 48", "fuse off", "ragged", "topk 4096",
                                    "no cu_seqlens", "no page table", "unaligned rows", "unaligned start"])
def test_every_other_call_goes_to_sglangs_top_k(change, monkeypatch):
    """Only a fused PAGED call the v2 kernel can read is ours: RAGGED calls already run v2 in
    SGLang; prefill context parallelism's request list, a k that is not a power of two or
    above 2,048, rows not 16-byte aligned, and SGLang's unfused path stay SGLang's."""
    from types import SimpleNamespace

    from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

    from sglang_indexcache.backend.topk import ExtendTopK

    scores, lengths, cu, table = _paged_case()
    kw = dict(logits=scores, lengths=lengths, topk=32, topk_transform_method=TopkTransformMethod.PAGED,
              attn_metadata=SimpleNamespace(page_table_1=table), cu_seqlens_q_topk=cu)
    assert ExtendTopK(_Upstream(), select=_torch_select, select_paged=_torch_select_paged).topk_transform(**kw) != "upstream"  # the base call is ours
    if change == "unfused":
        kw["force_unfused_topk"] = True
    elif change == "batch_idx_list":
        kw["batch_idx_list"] = [0]  # prefill context parallelism's list of requests
    elif change == "topk 48":
        kw["topk"] = 48
    elif change == "fuse off":
        monkeypatch.setenv("SGLANG_DSA_FUSE_TOPK", "0")
    elif change == "ragged":
        kw.update(topk_transform_method=TopkTransformMethod.RAGGED, topk_indices_offset=torch.zeros(5, dtype=torch.int32))
    elif change == "topk 4096":
        kw["topk"] = 4096
    elif change == "no cu_seqlens":
        kw["cu_seqlens_q_topk"] = None
    elif change == "no page table":
        kw["attn_metadata"] = SimpleNamespace(page_table_1=None)
    elif change == "unaligned rows":
        kw["logits"] = torch.randn(5, 66)[:, :64]  # row stride 66 floats: not a multiple of 4
    else:
        kw["logits"] = torch.randn(5 * 64 + 1)[1:].view(5, 64)  # the first row 4 bytes past an aligned base
    topk = ExtendTopK(_Upstream(), select=_torch_select, select_paged=_torch_select_paged)
    assert topk.topk_transform(**kw) == "upstream"
    assert topk.calls == 0 and len(topk.upstream.asked) == 1
    assert topk.is_sgl_kernel()  # the rest of SGLang's backend shows through


def test_an_unknown_top_k_kind_is_refused():
    from sglang_indexcache.backend.topk import ExtendTopK

    with pytest.raises(ValueError, match="top-k kind 'upstream': choose one of v2, v2-paged"):
        ExtendTopK(_Upstream(), "upstream")


def test_the_top_k_choice_is_read_from_the_environment(monkeypatch):
    from sglang_indexcache.backend.topk import choice_set, chosen

    monkeypatch.delenv("SGLANG_INDEXCACHE_TOPK", raising=False)
    assert chosen() == "v2-paged" and not choice_set()  # the default since session 26
    monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", "")
    assert chosen() == "v2-paged" and not choice_set()
    for kind in ("upstream", "v2", "v2-paged"):
        monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", kind)
        assert chosen() == kind and choice_set()
    monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", "filter")  # removed: refused by name, not ignored
    with pytest.raises(ValueError, match="SGLANG_INDEXCACHE_TOPK='filter': choose one of upstream, v2, v2-paged"):
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
    b.extend_topk = None  # SGLANG_INDEXCACHE_TOPK=upstream: SGLang's metadata as it is
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
@pytest.mark.parametrize("dist", ["indexer", "dummy"])
def test_v2_select_keeps_torch_topks_set_inside_each_rows_window(dist):
    """SGLANG_INDEXCACHE_TOPK=v2's selection (SGLang's v2 kernel, ragged entry point) as the
    PAGED route calls it: windows starting at row_starts, positions relative to the window."""
    from sglang_indexcache.backend.topk import v2_select

    scores, lengths = make_scores(2048, 122880, dist, "cuda")
    starts = torch.randint(0, 256, (scores.shape[0],), dtype=torch.int32, device="cuda")  # any alignment
    wide = torch.full((scores.shape[0], scores.shape[1] + 256), float("-inf"), device="cuda")
    cols = starts[:, None].long() + torch.arange(scores.shape[1], device="cuda")[None, :]
    wide.scatter_(1, cols, scores)  # row r's scores from column starts[r] on
    got = v2_select(wide, lengths, 2048, row_starts=starts)
    assert mismatched_rows(scores, lengths, 2048, got) == 0



@pytest.mark.gpu
@pytest.mark.parametrize("dist", ["indexer", "dummy"])
def test_v2_paged_kernel_gives_v2s_slots_row_for_row(dist):
    """`csrc/paged_topk.cuh` (`v2-paged`) against `v2` (SGLang's ragged v2 kernel, then `paged`)
    on the same scores: three requests of 700, 40 and 12 rows on prefixes of 20,000, 9,000 and
    1,000 tokens (the kernel's streaming, register and keep-all paths; three rows of 1, k - 1
    and k keys), windows at any alignment, a random page table; then torch.topk's set. Both
    select with SGLang's v2 code, so each row keeps the same slots (compared sorted: the kernels
    may write a kept set in another order)."""
    from sglang_indexcache.backend.topk import paged, v2_select, v2_select_paged

    k, rows_per_request, prefixes = 2048, (700, 40, 12), (20000, 9000, 1000)
    g = torch.Generator(device="cuda").manual_seed(5)
    parts = [make_scores(n, p, dist, "cuda", seed=i) for i, (n, p) in enumerate(zip(rows_per_request, prefixes))]
    rows = sum(rows_per_request)
    width = max(s.shape[1] for s, _ in parts) + 256
    lengths = torch.cat([n for _, n in parts])
    lengths[-3:] = torch.tensor([1, k - 1, k], dtype=torch.int32)  # rows a top-k keeps whole
    starts = torch.randint(0, 256, (rows,), dtype=torch.int32, device="cuda", generator=g)
    wide = torch.full((rows, width), float("-inf"), device="cuda")
    r0 = 0
    for s, _ in parts:
        cols = starts[r0:r0 + s.shape[0], None].long() + torch.arange(s.shape[1], device="cuda")[None, :]
        wide[r0:r0 + s.shape[0]].scatter_(1, cols, s)
        r0 += s.shape[0]
    owner = torch.repeat_interleave(torch.arange(3, device="cuda", dtype=torch.int32),
                                    torch.tensor(rows_per_request, device="cuda"))
    cu = torch.tensor([0, *torch.tensor(rows_per_request).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    table = torch.randperm(3 * width, device="cuda", generator=g).int().view(3, width)
    want = paged(v2_select(wide.clone(), lengths, k, row_starts=starts), table, cu)
    got = v2_select_paged(wide.clone(), lengths, k, table, owner, row_starts=starts)
    same = lambda a, b: int((a.sort(1).values != b.sort(1).values).any(1).sum())  # rows that differ
    assert same(got, want) == 0
    assert int((got[-3] >= 0).sum()) == 1 and int((got[-1] >= 0).sum()) == k  # short rows kept whole
    # the chunked call: one table row per score row (batch_idx_list), a slice of the rows
    chunk = slice(650, 760)
    got_chunk = v2_select_paged(wide[chunk].clone(), lengths[chunk], k, table, owner[chunk].contiguous(),
                                row_starts=starts[chunk].contiguous())
    assert same(got_chunk, want[chunk]) == 0
    # and, for the rows longer than k, the set torch.topk keeps (ties: compared as sorted values)
    flat = torch.empty(3 * width, dtype=torch.long, device="cuda")  # slot -> its place in the table
    flat[table.view(-1).long()] = torch.arange(3 * width, device="cuda")
    col = torch.where(got >= 0, flat[got.clamp(min=0).long()] % width, -1).int()  # the kept window columns
    long = (lengths > k).nonzero().view(-1).tolist()
    shifted = torch.stack([wide[r, int(starts[r]):int(starts[r]) + width - 256] for r in long])
    assert len(long) == 740 and mismatched_rows(shifted, lengths[long], k, col[long]) == 0
