"""Short extends score the paged index cache directly (`SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS`).

SGLang 0.5.23 scores an extend's queries in `Indexer._get_topk_ragged`: it gathers every
request's index keys from the paged cache into one contiguous buffer
(`get_index_k_scale_buffer`) and runs DeepGEMM's prefill kernel `fp8_mqa_logits`, whose
thread blocks each take a few queries and walk all of their keys. A turn of one new token on a
123K-token cached prefix is one query: one block, on one SM, scores all 123K keys (0.47 ms per
Full layer on an H200, session 4's profile), while the other SMs idle. Decode scores the same
cache with DeepGEMM's paged kernel `fp8_paged_mqa_logits`, which reads the keys where the cache
holds them and splits each row's keys across the SMs (`get_paged_mqa_logits_metadata`).

With `SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=N` (N > 0) an extend of at most N new tokens in all,
under the `indexcache` backend, is scored the way decode is: each new token is one row of the
paged kernel, over its request's page table, with its causal length (SGLang's
`dsa_seqlens_expanded`: prefix + its position + 1). SGLang's own `topk_transform`, with the
extend's metadata, then keeps and maps the top-k as it does after the ragged logits: PAGED
(bf16 KV) through the request's page table, RAGGED (FP8 KV) plus the request's offset in the
flattened KV. The logits' columns are positions in the request either way; only the kernel that
computes them and where it reads the keys change, so the kept set is the same up to the order of
the kernels' fp32 sums (ties at the k-th score may break differently).

Everything else stays on SGLang's path: decode, speculative verify and draft (they are paged
already), more than N new tokens (the paged kernel reads each row's keys once per row; the
prefill kernel shares them across a block of rows, which wins for long extends), prefill context
parallelism, a KV shard's logical page table, SGLang's other indexer classes and logits kernels
(CuTe DSL, aiter), an index page size other than 64.

Measured on an H200 (`bench turn`, flash-12, 123K cached tokens, unit indexer weights; logits
per Full layer, paged against SGLang's): session 12 (benchmarks/results/h200-2026-12-01-session12/)
+1 0.010 against 0.468 ms, +64 0.125 against 0.501, +512 0.91 against 0.52, +2,048 3.66 against
2.10; session 13 (benchmarks/results/h200-2026-12-01-session13/) +128 0.243 against 0.503. The
paged kernel grows with the rows (about 1.8 us each), SGLang's stays near 0.5 ms up to some 500
rows: they cross near 270. The default, N = 128, keeps the route where it wins by 2x or more.
It is on by default since session 13, when its server tests against upstream passed on an H200
(tests/test_gpu.py, bf16 KV with SGLang's own top-k and FP8 KV: largest prompt log-probability
difference 0); set 0 to turn it off.
"""

from __future__ import annotations

import os

ENV = "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS"
DEFAULT_ROWS = 128  # on since session 13 (see above); 0 turns the route off
PAGE = 64  # DeepGEMM's paged kernel reads 64-token pages of [64 x 128 fp8 | 64 x fp32 scale]
ROW_BYTES = 132  # one key: 128 fp8 values and its fp32 scale


def rows_set() -> bool:
    """The variable is given (not empty), rather than `max_rows` falling back to the default."""
    return bool(os.environ.get(ENV, "").strip())


def max_rows() -> int:
    """The most new tokens an extend may have to be scored by the paged kernel (0: never)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_ROWS
    try:
        rows = int(raw)
    except ValueError:
        rows = -1
    if rows < 0:
        raise ValueError(f"{ENV}={raw!r}: give a whole number of new tokens (0 turns the route off)")
    return rows


def rows_to_route(indexer, forward_batch, metadata, limit: int) -> int:
    """The extend's new tokens if the paged route serves this call, else 0 (SGLang's path)."""
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    if limit <= 0 or type(indexer) is not Indexer:  # IndexerKPool and others: their own cache layout
        return 0
    if forward_batch.forward_mode not in (ForwardMode.EXTEND, ForwardMode.MIXED):
        return 0
    if getattr(forward_batch, "attn_cp_metadata", None) is not None or getattr(indexer, "dsa_enable_prefill_cp", False):
        return 0
    backend = getattr(indexer, "paged_mqa_logits_backend", None)
    if backend is None or not backend.is_deepgemm():
        return 0
    attn = getattr(metadata, "attn_metadata", None)
    if attn is None or getattr(attn, "indexer_logical_page_table", None) is not None:
        return 0
    from sglang.srt.model_executor.forward_context import get_token_to_kv_pool

    if getattr(get_token_to_kv_pool(), "index_page_size", None) != PAGE:
        return 0
    rows = sum(metadata.get_dsa_extend_len_cpu())
    if not 0 < rows <= limit or int(metadata.get_seqlens_expanded().shape[0]) != rows:
        return 0
    return rows


def paged_logits(q_fp8, weights, kv_pages, lengths, tables, sm_count: int, logits_fn, schedule_fn):
    """[rows, tables.shape[1] * 64] fp32 index scores: row i scores the first lengths[i] keys of
    the pages tables[i] names, as decode does (`Indexer._get_topk_paged`): q_fp8 [rows, H, 128],
    weights [rows, H], kv_pages [pages, 64 * 132] bytes. Columns past a row's length are not
    cleaned: the top-k reads lengths[i] of them."""
    from sglang.kernels.ops.attention.dsa.paged_mqa_logits import deepgemm_paged_mqa_logits_split

    rows = int(lengths.shape[0])
    ctx = lengths.to(q_fp8.device).int().contiguous().view(-1, 1)
    schedule = schedule_fn(ctx, PAGE, sm_count)
    kv = kv_pages.view(kv_pages.shape[0], PAGE, 1, ROW_BYTES)
    return deepgemm_paged_mqa_logits_split(logits_fn, q_fp8, kv, weights, ctx, tables, schedule,
                                           tables.shape[1] * PAGE, q_offset=rows)


def topk(indexer, layer_id: int, q_fp8, weights, metadata, rows: int, topk_result=None):
    """What `Indexer._get_topk_ragged` returns for this extend, from the paged logits."""
    import torch
    from sglang.srt.layers.attention.dsa.utils import (
        resolve_fp8_paged_mqa_logits_fn,
        resolve_paged_mqa_logits_metadata_fn,
    )
    from sglang.srt.model_executor.forward_context import get_token_to_kv_pool

    lengths = metadata.get_seqlens_expanded()
    tables = metadata.get_page_table_64()
    if any(n != 1 for n in metadata.get_dsa_extend_len_cpu()):  # a request with several new rows
        tables = tables.index_select(0, metadata.get_token_to_batch_idx()[:rows].long())
    kv_pages = indexer._get_index_k_read_buffer(get_token_to_kv_pool(), layer_id)
    with indexer._with_real_sm_count():
        logits = paged_logits(q_fp8, weights.squeeze(-1), kv_pages, lengths, tables, indexer.sm_count,
                              resolve_fp8_paged_mqa_logits_fn(), resolve_paged_mqa_logits_metadata_fn())
    indexer._mask_init_and_local_tokens(logits, lengths)
    kept = metadata.topk_transform(logits, indexer.index_topk)
    if topk_result is None and rows == q_fp8.shape[0]:
        return kept
    if topk_result is None:  # padded hidden states: the padding rows keep nothing, as upstream
        topk_result = torch.full((q_fp8.shape[0], indexer.index_topk), -1, dtype=torch.int32, device=q_fp8.device)
    topk_result[:rows] = kept
    return topk_result
