"""Which top-k a Full layer's extend runs under the CUDA `indexcache` backend.

By default SGLang's own (`--dsa-topk-backend`, `SGLANG_OPT_USE_TOPK_V2`, ...): nothing here
runs. `SGLANG_INDEXCACHE_TOPK=filter` makes plain extends (prefill, a turn on a cached
prefix; not decode, not speculative verify or draft) run `backend/ops/topk.py`'s Triton
kernel instead, with SGLang's output transform applied to its columns: PAGED (bf16 KV)
maps each kept position through the request's page_size-1 page table, RAGGED (FP8 KV)
adds the row's offset into the ragged keys, -1 padding either way, as sgl-kernel's
`fast_topk_transform_fused` / `fast_topk_transform_ragged_fused` define them (a PAGED call
of SGLang's row-chunked logits, whose `batch_idx_list` tensor names each row's request, reads
that request's table). Every other call (SGLang's unfused path, prefill context parallelism's
`batch_idx_list` list, a top-k that is not a power of two) goes to SGLang's backend unchanged.

Experimental: off until `bench topk` and `bench turn` show it faster on a GPU, where it has
not run yet. The kept set is exact (ties broken by lowest column, where SGLang's kernels
break them their own way), so tokens and log-probabilities stay those of `dsa` within the
tolerance that ordering inside a kept set allows.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

ENV = "SGLANG_INDEXCACHE_TOPK"
CHOICES = ("upstream", "filter")


def chosen() -> str:
    """The top-k the environment asks for; a value outside CHOICES is an error naming them."""
    value = os.environ.get(ENV, "upstream").strip() or "upstream"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: choose one of {', '.join(CHOICES)}")
    return value


class FilterTopK:
    """Stands in for SGLang's `DSATopKBackend` in an extend's indexer metadata: its fused
    `topk_transform` runs `select` (default: the Triton filter top-k); anything else is
    SGLang's backend's."""

    def __init__(self, upstream, select: Optional[Callable] = None):
        self.upstream = upstream
        self._select = select
        self.calls = 0  # top-k calls this backend ran (tests, and the per-forward check in a profile)

    def __getattr__(self, name):
        return getattr(self.upstream, name)

    @property
    def select(self) -> Callable:
        if self._select is None:
            from sglang_indexcache.backend.ops.topk import filter_topk

            self._select = filter_topk
        return self._select

    def topk_transform(self, logits, lengths, topk, topk_transform_method, attn_metadata,
                       cu_seqlens_q_topk=None, topk_indices_offset=None, row_starts=None,
                       batch_idx_list=None, force_unfused_topk=False):
        import torch
        from sglang.srt.environ import envs
        from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod

        method = TopkTransformMethod(topk_transform_method)
        rows_of_requests = isinstance(batch_idx_list, torch.Tensor)  # the chunked PAGED call
        ours = (
            envs.SGLANG_DSA_FUSE_TOPK.get() and not force_unfused_topk
            and (batch_idx_list is None or (rows_of_requests and method == TopkTransformMethod.PAGED))
            and logits.dim() == 2 and logits.dtype == torch.float32 and logits.stride(1) == 1
            and topk > 0 and topk & (topk - 1) == 0 and lengths.shape[0] == logits.shape[0]
            and ((method == TopkTransformMethod.RAGGED and topk_indices_offset is not None)
                 or (method == TopkTransformMethod.PAGED and cu_seqlens_q_topk is not None
                     and getattr(attn_metadata, "page_table_1", None) is not None))
        )
        if not ours:
            return self.upstream.topk_transform(
                logits=logits, lengths=lengths, topk=topk, topk_transform_method=topk_transform_method,
                attn_metadata=attn_metadata, cu_seqlens_q_topk=cu_seqlens_q_topk,
                topk_indices_offset=topk_indices_offset, row_starts=row_starts,
                batch_idx_list=batch_idx_list, force_unfused_topk=force_unfused_topk)
        self.calls += 1
        if method == TopkTransformMethod.RAGGED:
            return self.select(logits, lengths, topk, row_starts=row_starts, offsets=topk_indices_offset)
        table = attn_metadata.page_table_1
        if rows_of_requests:
            table = table[batch_idx_list.long()]
        return paged(self.select(logits, lengths, topk, row_starts=row_starts), table, cu_seqlens_q_topk)


def paged(cols, page_table, cu_seqlens_q):
    """Kept positions -> KV slots: row r of request b (cu_seqlens_q[b] <= r < cu_seqlens_q[b+1])
    reads page_table[b, position]; -1 stays -1."""
    import torch

    rows = torch.arange(cols.shape[0], device=cols.device, dtype=cu_seqlens_q.dtype)
    req = torch.searchsorted(cu_seqlens_q[1:].contiguous(), rows, right=True).long()
    slots = page_table[req[:, None], cols.clamp(min=0).long()]
    return torch.where(cols >= 0, slots.to(torch.int32), torch.full_like(cols, -1))
