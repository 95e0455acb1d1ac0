"""Which top-k a Full layer's extend runs under the CUDA `indexcache` backend.

By default SGLang's own (`--dsa-topk-backend`, `SGLANG_OPT_USE_TOPK_V2`, ...): nothing here
runs. `SGLANG_INDEXCACHE_TOPK` picks another for plain extends (prefill, a turn on a cached
prefix; not decode, not speculative verify or draft):

  v2      SGLang's own v2 JIT top-k (the DeepSeek-V4 kernel, `topk_transform_ragged_v2`) for
          the PAGED (bf16 KV) extend too, where SGLang 0.5.23 runs it only for RAGGED (FP8 KV)
          extends and decode and keeps PAGED extends on the legacy `fast_topk_transform_fused`.
          On an H200 (`bench topk`, 2,048 rows on a 122,880-token prefix) v2 took 0.52 ms
          against the legacy kernel's 1.04 ms on indexer-like scores, 0.99 against 3.06 on
          scores crowding one fp16 bin (dummy weights), both exact. Its columns go through
          `paged` below, the page-table transform the legacy kernel fuses.
  filter  `backend/ops/topk.py`'s Triton kernel for PAGED and RAGGED extends: exact, but 1.9 to
          5.5 times slower than v2 on the H200 at every size measured; kept for the record
          until the v2 route has run in a server.

Columns go through SGLang's output transform: PAGED (bf16 KV) maps each kept position through
the request's page_size-1 page table, RAGGED (FP8 KV) adds the row's offset into the ragged
keys, -1 padding either way, as sgl-kernel's `fast_topk_transform_fused` /
`fast_topk_transform_ragged_fused` define them (a PAGED call of SGLang's row-chunked logits,
whose `batch_idx_list` tensor names each row's request, reads that request's table). Every
other call (SGLang's unfused path, prefill context parallelism's `batch_idx_list` list, a
top-k that is not a power of two, for v2 one above 2,048 or a row stride the kernel cannot
read) goes to SGLang's backend unchanged.

The kept set is exact (ties broken by each kernel its own way), so tokens and
log-probabilities stay those of `dsa` within the tolerance that ordering inside a kept set
allows.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

ENV = "SGLANG_INDEXCACHE_TOPK"
CHOICES = ("upstream", "v2", "filter")


def chosen() -> str:
    """The top-k the environment asks for; a value outside CHOICES is an error naming them."""
    value = os.environ.get(ENV, "upstream").strip() or "upstream"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: choose one of {', '.join(CHOICES)}")
    return value


def v2_select(logits, lengths, topk: int, row_starts=None, offsets=None):
    """SGLang's v2 JIT top-k through its ragged entry point: row i keeps the top-k of
    logits[i, s : s + lengths[i]] (s = row_starts[i], else 0) as positions in that window
    (plus offsets[i]), -1 padded. It writes the <= 3 columns ahead of each window in place;
    SGLang's extend logits have no reader after the top-k."""
    import torch
    from sglang.kernels.ops.attention.dsv4.topk import topk_transform_ragged_v2

    rows = logits.shape[0]
    out = logits.new_empty((rows, topk), dtype=torch.int32)
    if offsets is None:
        offsets = torch.zeros(rows, dtype=torch.int32, device=logits.device)
    topk_transform_ragged_v2(logits, lengths.to(torch.int32), out_offsets=offsets.to(torch.int32), out_indices=out,
                             row_starts=None if row_starts is None else row_starts.to(torch.int32))
    return out


class ExtendTopK:
    """Stands in for SGLang's `DSATopKBackend` in an extend's indexer metadata: its fused
    `topk_transform` runs `select` (by `kind`: `v2_select`, PAGED only, or the Triton filter
    top-k); anything else is SGLang's backend's."""

    def __init__(self, upstream, kind: str = "filter", select: Optional[Callable] = None):
        if kind not in CHOICES[1:]:
            raise ValueError(f"top-k kind {kind!r}: choose one of {', '.join(CHOICES[1:])}")
        self.upstream = upstream
        self.kind = kind
        self._select = select
        self.calls = 0  # top-k calls this backend ran (tests, and the per-forward check in a profile)

    def __getattr__(self, name):
        return getattr(self.upstream, name)

    @property
    def select(self) -> Callable:
        if self._select is None:
            if self.kind == "v2":
                self._select = v2_select
            else:
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
            # v2: SGLang already runs it for RAGGED; its limits (k, 16-byte aligned rows)
            and (self.kind != "v2" or (method == TopkTransformMethod.PAGED and topk <= 2048
                                       and logits.stride(0) % 4 == 0 and logits.data_ptr() % 16 == 0))
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
