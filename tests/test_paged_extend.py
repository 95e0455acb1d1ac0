"""Short extends scored by the paged logits kernel (`backend/paged_extend.py`).

On CPU: the route's bookkeeping (each new token a row over its request's pages, its causal
length, SGLang's own top-k transform after it) with SGLang's torch implementation of the paged
kernel (`SGLANG_FP8_PAGED_MQA_LOGITS_TORCH`) standing in for DeepGEMM, against a float64
reference computed from the same fp8 keys; when it applies; how the backend and the hook hand
calls to it. On a GPU (`gpu` marker): DeepGEMM's paged kernel through the route against
DeepGEMM's prefill kernel on the gathered keys, as SGLang's extend path runs it.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch

from sglang_indexcache.backend import paged_extend

H, D = 32, 128  # the indexer's heads and head dim in GLM-5 / DeepSeek-V3.2
PAGE = paged_extend.PAGE


def make_cache(prefix_new, pages_total=48, seed=0, device="cpu"):
    """A paged fp8 index-K cache holding each request's keys on shuffled pages, and its rows.

    prefix_new: [(cached tokens, new tokens)] per request. Returns the pieces SGLang's
    metadata would hold for that extend, plus the float keys and scales the cache holds."""
    g = torch.Generator().manual_seed(seed)
    kv = torch.zeros(pages_total, PAGE * paged_extend.ROW_BYTES, dtype=torch.uint8)
    perm = torch.randperm(pages_total, generator=g).tolist()
    tables, keys, scales, lengths, owner = [], [], [], [], []
    width = max(-(-(c + n) // PAGE) for c, n in prefix_new)
    for b, (cached, new) in enumerate(prefix_new):
        total = cached + new
        npages = -(-total // PAGE)
        pages = [perm.pop() for _ in range(npages)]
        k = (torch.randn(npages * PAGE, D, generator=g) * 0.5).to(torch.float8_e4m3fn)
        s = torch.rand(npages * PAGE, generator=g) * 0.9 + 0.1
        for j, p in enumerate(pages):  # a page: 64 x 128 fp8 values, then 64 fp32 scales
            kv[p, : PAGE * D] = k[j * PAGE:(j + 1) * PAGE].reshape(-1).view(torch.uint8)
            kv[p, PAGE * D:] = s[j * PAGE:(j + 1) * PAGE].view(torch.uint8)
        tables.append(pages + [0] * (width - npages))
        keys.append(k[:total].double())
        scales.append(s[:total].double())
        lengths += list(range(cached + 1, total + 1))
        owner += [b] * new
    rows = len(lengths)
    q = (torch.randn(rows, H, D, generator=g) * 0.5).to(torch.float8_e4m3fn)
    w = torch.randn(rows, H, generator=g)
    return SimpleNamespace(
        kv=kv.to(device), tables=torch.tensor(tables, dtype=torch.int32, device=device),
        lengths=torch.tensor(lengths, dtype=torch.int32, device=device),
        owner=torch.tensor(owner, dtype=torch.int32, device=device), q=q.to(device), w=w.to(device),
        keys=keys, scales=scales, extend_lens=[n for _, n in prefix_new])


def reference_scores(c, row: int):
    """float64: sum over heads of w * relu(q . k), times the key's scale, over the row's keys."""
    b, n = int(c.owner[row]), int(c.lengths[row])
    k, s = c.keys[b][:n], c.scales[b][:n]
    dots = torch.relu(c.q[row].cpu().double() @ k.T)  # [H, n]
    return (c.w[row].cpu().double()[:, None] * dots).sum(0) * s


# SGLang's torch paged kernel multiplies in bf16: 3 significant digits
TORCH_KERNEL_TOL = 2e-2


def surely_in_and_out(ref, k: int):
    """Positions whose reference score is above / below the k-th by more than the torch
    kernel's rounding: those a kept set must hold / must not hold."""
    kth = ref.sort(descending=True).values[k - 1]
    tol = TORCH_KERNEL_TOL * float(ref.abs().max())
    return ({int(p) for p in torch.nonzero(ref > kth + tol).flatten()},
            {int(p) for p in torch.nonzero(ref < kth - tol).flatten()})


def torch_paged_logits(monkeypatch):
    """SGLang's torch implementation of DeepGEMM's paged kernel (it needs no schedule)."""
    from sglang.srt.layers.attention.dsa import utils

    monkeypatch.setenv("SGLANG_FP8_PAGED_MQA_LOGITS_TORCH", "1")
    utils.resolve_fp8_paged_mqa_logits_fn.cache_clear()
    monkeypatch.setattr(utils, "resolve_paged_mqa_logits_metadata_fn", lambda: (lambda ctx, page, sms: None))
    fn = utils.resolve_fp8_paged_mqa_logits_fn()
    utils.resolve_fp8_paged_mqa_logits_fn.cache_clear()  # the next caller resolves for itself
    return fn


SHAPES = [[(700, 1), (333, 3)], [(130, 1)], [(64, 5), (0, 2), (200, 1)]]


@pytest.mark.parametrize("prefix_new", SHAPES)
def test_each_new_token_scores_its_requests_keys_up_to_its_own_position(prefix_new, monkeypatch):
    from sglang.srt.layers.attention.dsa.utils import _fp8_paged_mqa_logits_torch

    c = make_cache(prefix_new)
    tables = c.tables.index_select(0, c.owner.long())
    logits = paged_extend.paged_logits(c.q, c.w, c.kv, c.lengths, tables, 4, _fp8_paged_mqa_logits_torch,
                                       lambda ctx, page, sms: None)
    assert logits.shape == (len(c.lengths), tables.shape[1] * PAGE) and logits.dtype == torch.float32
    for r in range(len(c.lengths)):
        ref = reference_scores(c, r)
        got = logits[r, : len(ref)].double()
        assert torch.allclose(got, ref, rtol=TORCH_KERNEL_TOL, atol=TORCH_KERNEL_TOL * float(ref.abs().max())), r


class FakeIndexer:
    index_topk = 16
    sm_count = 4
    num_init_tokens = num_local_tokens = 0

    def __init__(self, kv):
        self.kv = kv

    def _get_index_k_read_buffer(self, pool, layer_id):
        return self.kv

    def _with_real_sm_count(self):
        import contextlib

        return contextlib.nullcontext()

    def _mask_init_and_local_tokens(self, logits, lengths, row_starts=None):
        from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

        return Indexer._mask_init_and_local_tokens(self, logits, lengths, row_starts)


def extend_metadata(c):
    """SGLang's own DSAIndexerMetadata over the fields an extend's metadata holds for the route;
    unfused torch top-k, so the result is each row's kept positions."""
    from sglang.srt.layers.attention.dsa.dsa_indexer_metadata import DSAIndexerMetadata
    from sglang.srt.layers.attention.dsa.dsa_topk_backend import DSATopKBackend, TopkTransformMethod

    attn = SimpleNamespace(dsa_seqlens_expanded=c.lengths, real_page_table=c.tables, dsa_extend_seq_lens_list=c.extend_lens,
                           token_to_batch_idx=c.owner, indexer_logical_page_table=None,
                           cu_seqlens_q=None, topk_indices_offset=None)
    return DSAIndexerMetadata(attn_metadata=attn, topk_transform_method=TopkTransformMethod.PAGED,
                              topk_backend=DSATopKBackend.TORCH)


@pytest.mark.parametrize("prefix_new", SHAPES)
@pytest.mark.parametrize("padded", [False, True])
def test_the_route_keeps_the_reference_top_k_of_every_new_token(prefix_new, padded, monkeypatch):
    """topk(): the paged logits, then SGLang's top-k transform, as `_get_topk_ragged` returns it
    (padding rows of the hidden states keep nothing; a caller's buffer is filled in place)."""
    from sglang.srt.model_executor import forward_context

    torch_paged_logits(monkeypatch)
    monkeypatch.setenv("SGLANG_DSA_FUSE_TOPK", "0")
    monkeypatch.setattr(forward_context, "get_token_to_kv_pool", lambda: SimpleNamespace(index_page_size=PAGE))
    c = make_cache(prefix_new, seed=3)
    rows, k = len(c.lengths), FakeIndexer.index_topk
    q = torch.cat([c.q, c.q[:2]]) if padded else c.q
    buffer = torch.full((q.shape[0], k), -7, dtype=torch.int32) if padded else None
    got = paged_extend.topk(FakeIndexer(c.kv), 0, q, c.w[:, :, None] if not padded else torch.cat([c.w, c.w[:2]])[:, :, None],
                            extend_metadata(c), rows, buffer)
    assert got.shape == (q.shape[0], k)
    if padded:
        assert got is buffer and bool((got[rows:] == -7).all())  # upstream's buffer: only its rows written
    for r in range(rows):
        ref = reference_scores(c, r)
        kept = set(got[r].tolist()) - {-1}
        want = min(k, len(ref))
        assert len(kept) == want and all(0 <= p < len(ref) for p in kept), r
        # the same set, up to scores within the torch kernel's bf16 rounding of the k-th
        surely_in, surely_out = surely_in_and_out(ref, want)
        assert surely_in <= kept and not (kept & surely_out), r


@pytest.mark.parametrize("kind", ["v2", "v2-paged"])
def test_the_route_then_the_v2_paged_transform_gives_each_new_tokens_kv_slots(monkeypatch, kind):
    """The path `bench turn` (n, p) ran for bf16 KV: the route's logits, then SGLANG_INDEXCACHE_TOPK's
    PAGED transform (`backend/topk.py`, torch selections standing in for the kernels): `v2` maps
    through the extend's cu_seqlens_q, `v2-paged` through SGLang's row map (token_to_batch_idx),
    each into the page_size-1 table: every kept slot is the one its request's table holds at a
    reference top-k position."""
    from sglang.srt.layers.attention.dsa.dsa_indexer_metadata import DSAIndexerMetadata
    from sglang.srt.layers.attention.dsa.dsa_topk_backend import DSATopKBackend, TopkTransformMethod
    from sglang.srt.model_executor import forward_context

    from sglang_indexcache.backend.topk import ExtendTopK
    from test_topk import _torch_select, _torch_select_paged

    torch_paged_logits(monkeypatch)
    monkeypatch.setenv("SGLANG_DSA_FUSE_TOPK", "1")
    monkeypatch.setattr(forward_context, "get_token_to_kv_pool", lambda: SimpleNamespace(index_page_size=PAGE))
    c = make_cache([(700, 1), (333, 3), (90, 2)], seed=4)
    g = torch.Generator().manual_seed(9)
    width = c.tables.shape[1] * PAGE
    slots = torch.randperm(50_000, generator=g)[: 3 * width].view(3, width).int()  # page_size-1 table
    cu = torch.tensor([0] + c.extend_lens, dtype=torch.int32).cumsum(0).int()
    attn = SimpleNamespace(dsa_seqlens_expanded=c.lengths, real_page_table=c.tables, page_table_1=slots,
                           dsa_extend_seq_lens_list=c.extend_lens, token_to_batch_idx=c.owner,
                           indexer_logical_page_table=None, cu_seqlens_q=cu, topk_indices_offset=None)
    topk = ExtendTopK(DSATopKBackend.SGL_KERNEL, kind, select=_torch_select, select_paged=_torch_select_paged)
    md = DSAIndexerMetadata(attn_metadata=attn, topk_transform_method=TopkTransformMethod.PAGED, topk_backend=topk)
    got = paged_extend.topk(FakeIndexer(c.kv), 0, c.q, c.w[:, :, None], md, len(c.lengths))
    assert topk.calls == 1 and topk.fused_calls == (kind == "v2-paged")
    k = FakeIndexer.index_topk
    for r in range(len(c.lengths)):
        ref = reference_scores(c, r)
        table = slots[int(c.owner[r])]
        kept = set(got[r].tolist()) - {-1}
        assert len(kept) == k and kept <= set(table[: len(ref)].tolist()), r
        surely_in, surely_out = surely_in_and_out(ref, k)
        assert {int(table[p]) for p in surely_in} <= kept, r
        assert not kept & {int(table[p]) for p in surely_out}, r


# ---- when it applies ------------------------------------------------------------------------


def fake_indexer(cls=None, backend="deepgemm"):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.layers.attention.dsa.paged_mqa_logits_backend import DSAPagedMQALogitsBackend

    cls = cls or Indexer
    ind = cls.__new__(cls)
    torch.nn.Module.__init__(ind)
    ind.dsa_enable_prefill_cp = False
    ind.paged_mqa_logits_backend = DSAPagedMQALogitsBackend(backend)
    return ind


def test_the_route_takes_only_short_plain_extends_it_can_read(monkeypatch):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.model_executor import forward_context
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    pool = SimpleNamespace(index_page_size=PAGE)
    monkeypatch.setattr(forward_context, "get_token_to_kv_pool", lambda: pool)
    c = make_cache([(700, 1), (333, 3)])
    md = extend_metadata(c)
    fb = SimpleNamespace(forward_mode=ForwardMode.EXTEND, attn_cp_metadata=None)
    rows = paged_extend.rows_to_route
    assert rows(fake_indexer(), fb, md, 8) == 4 and rows(fake_indexer(), fb, md, 4) == 4
    assert rows(fake_indexer(), fb, md, 3) == 0  # more new tokens than asked for
    assert rows(fake_indexer(), fb, md, 0) == 0  # off
    for mode, routed in [("MIXED", 4), ("DECODE", 0), ("TARGET_VERIFY", 0), ("DRAFT_EXTEND_V2", 0), ("IDLE", 0), ("SPLIT_PREFILL", 0)]:
        assert rows(fake_indexer(), SimpleNamespace(forward_mode=ForwardMode[mode], attn_cp_metadata=None), md, 8) == routed, mode
    assert rows(fake_indexer(), SimpleNamespace(forward_mode=ForwardMode.EXTEND, attn_cp_metadata=object()), md, 8) == 0
    cp = fake_indexer()
    cp.dsa_enable_prefill_cp = True
    assert rows(cp, fb, md, 8) == 0
    assert rows(fake_indexer(backend="cutedsl"), fb, md, 8) == 0
    assert rows(fake_indexer(type("OtherIndexer", (Indexer,), {})), fb, md, 8) == 0
    md.attn_metadata.indexer_logical_page_table = c.tables  # a KV shard's logical pages
    assert rows(fake_indexer(), fb, md, 8) == 0
    md.attn_metadata.indexer_logical_page_table = None
    pool.index_page_size = 1
    assert rows(fake_indexer(), fb, md, 8) == 0


def test_the_row_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(paged_extend.ENV, raising=False)
    assert paged_extend.max_rows() == paged_extend.DEFAULT_ROWS and not paged_extend.rows_set()
    monkeypatch.setenv(paged_extend.ENV, " ")
    assert paged_extend.max_rows() == paged_extend.DEFAULT_ROWS and not paged_extend.rows_set()
    monkeypatch.setenv(paged_extend.ENV, " 256 ")
    assert paged_extend.max_rows() == 256 and paged_extend.rows_set()
    for bad in ("2k", "-3", "1.5"):
        monkeypatch.setenv(paged_extend.ENV, bad)
        with pytest.raises(ValueError, match="give a whole number of new tokens"):
            paged_extend.max_rows()


# ---- how calls reach it ------------------------------------------------------------------------


def test_the_hook_matches_sglangs_method_and_hands_calls_to_the_backend(monkeypatch):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.model_executor import forward_context

    from sglang_indexcache.backend.gpu import IndexCacheDSABackend
    from sglang_indexcache.backend.hooks import EXTEND_TOPK_PARAMS, register_extend_route

    assert tuple(inspect.signature(Indexer._get_topk_ragged).parameters) == EXTEND_TOPK_PARAMS
    # SGLang's forward_cuda calls it positionally, in that order
    assert "self._get_topk_ragged(\n                    enable_dual_stream,\n                    forward_batch,\n" \
           "                    layer_id,\n                    q_fp8,\n                    weights,\n" \
           "                    metadata,\n                )" in inspect.getsource(Indexer.forward_cuda)
    register_extend_route()
    register_extend_route()  # idempotent

    b = object.__new__(IndexCacheDSABackend)  # no GPU: only what the method reads
    b.paged_extend_rows, b.paged_extend_calls = 8, 0
    routed = []
    monkeypatch.setattr(paged_extend, "rows_to_route", lambda ind, fb, md, limit: 4 if fb == "short" else 0)
    monkeypatch.setattr(paged_extend, "topk", lambda *a: routed.append(a) or "paged")
    monkeypatch.setattr(forward_context, "get_attn_backend", lambda: b)
    ind = fake_indexer()
    # SGLang's own body would need a GPU pool: the unrouted call is seen failing inside it
    with pytest.raises(Exception) as upstream:
        ind._get_topk_ragged(False, SimpleNamespace(forward_mode=None), 5, "q", "w", "md")
    assert "paged" not in str(upstream.value) and not routed and b.paged_extend_calls == 0
    assert ind._get_topk_ragged(False, "short", 5, "q", "w", "md") == "paged"
    assert routed == [(ind, 5, "q", "w", "md", 4, None)] and b.paged_extend_calls == 1
    monkeypatch.setattr(forward_context, "get_attn_backend", lambda: SimpleNamespace())  # dsa, a draft's
    with pytest.raises(Exception):
        ind._get_topk_ragged(False, "short", 5, "q", "w", "md")
    assert b.paged_extend_calls == 1


# ---- on a GPU: DeepGEMM's paged kernel against its prefill kernel --------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("prefix_new", [[(30000, 1)], [(30000, 1), (12345, 1)], [(20000, 7), (9000, 1), (4000, 56)]])
def test_deepgemm_paged_logits_equal_the_prefill_kernels_on_gathered_keys(prefix_new):
    """The route's logits (DeepGEMM `fp8_paged_mqa_logits` on the pages) against SGLang's extend
    path (the keys gathered contiguous, DeepGEMM `fp8_mqa_logits` with each row's [ks, ke)):
    fp32 sums of the same fp8 products, in another order; and the top-k sets they give."""
    import deep_gemm

    c = make_cache(prefix_new, pages_total=sum(-(-(a + b) // PAGE) for a, b in prefix_new) + 8, seed=5, device="cuda")
    tables = c.tables.index_select(0, c.owner.long())
    sms = deep_gemm.get_num_sms()
    paged = paged_extend.paged_logits(c.q, c.w, c.kv, c.lengths, tables, sms, deep_gemm.fp8_paged_mqa_logits,
                                      deep_gemm.get_paged_mqa_logits_metadata)
    # SGLang's ragged path: every request's keys gathered one after another
    k_fp8 = torch.cat([c.keys[b].float().to(torch.float8_e4m3fn) for b in range(len(prefix_new))]).cuda()
    k_scale = torch.cat([c.scales[b].float() for b in range(len(prefix_new))]).cuda()
    starts = torch.tensor([0] + [len(k) for k in c.keys], device="cuda").cumsum(0)[:-1].int()
    ks = starts[c.owner.long()]
    ke = ks + c.lengths
    ragged = deep_gemm.fp8_mqa_logits(c.q, (k_fp8, k_scale), c.w, ks, ke, clean_logits=False)
    worst_rel, mismatched = 0.0, 0
    for r in range(len(c.lengths)):
        n = int(c.lengths[r])
        a, b = paged[r, :n], ragged[r, int(ks[r]): int(ks[r]) + n]
        worst_rel = max(worst_rel, float((a - b).abs().max() / b.abs().max()))
        ka = set(a.topk(min(2048, n)).indices.tolist())
        kb = set(b.topk(min(2048, n)).indices.tolist())
        mismatched += len(ka ^ kb) // 2
    print(f"{prefix_new}: largest |paged - ragged| / max|ragged| {worst_rel:.2e}, top-2048 swaps {mismatched}")
    assert worst_rel < 1e-5
    assert mismatched <= 2 * len(c.lengths)  # near-ties at the k-th score only
