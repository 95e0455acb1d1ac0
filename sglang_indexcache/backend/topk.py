"""Which top-k a Full layer's extend runs under the CUDA `indexcache` backend.

SGLang 0.5.23 runs its v2 JIT top-k (the DeepSeek-V4 kernel, `topk_transform_ragged_v2`)
for RAGGED (FP8 KV) extends and for decode, but keeps PAGED (bf16 KV) extends on its legacy
`fast_topk_transform_fused`. `SGLANG_INDEXCACHE_TOPK` picks what plain extends (prefill, a
turn on a cached prefix; not decode, not speculative verify or draft) with a PAGED top-k run:
`v2` (the default since 2026-12-02, session 21) or `upstream` (SGLang's choice, as `dsa`
makes it; nothing here runs). On an H200 (`bench topk`, 2,048 rows on a 122,880-token
prefix, k 2,048) v2 took 0.52 ms against the legacy kernel's 1.04 ms on indexer-like
scores, and 0.99 against 3.06 on scores crowding one fp16 bin (dummy weights); both exact.
In servers it gave prompt log-probabilities equal to the legacy kernel's and to upstream
native sharing's (largest difference 0, `tests/test_gpu.py`), and on the 78-layer GLM-5.2
shape at the declared schedule turns at >= 96K of context 1.71x faster than `dsa` all Full
(README, "Performance"). On CPU the choice does not apply: `v2` set there is refused.

v2 is called through its ragged entry point, which returns kept positions in each row's
window; `paged` then maps them through the request's page_size-1 page table, the transform
the legacy kernel fuses (as sgl-kernel's `topk_transform_prefill_kernel` does: position p
of a row of request b becomes page_table[b, p], -1 stays -1; a PAGED call of SGLang's
row-chunked logits, whose `batch_idx_list` tensor names each row's request, reads that
request's table). Every other call goes to SGLang's backend unchanged: RAGGED (already v2),
SGLang's unfused path, prefill context parallelism's `batch_idx_list` list, a top-k that is
not a power of two or is above 2,048, rows the kernel cannot read (a row stride not a
multiple of 4 floats, a first row not 16-byte aligned).

The kept set is exact (ties broken by each kernel its own way), so tokens and
log-probabilities stay those of `dsa` within the tolerance that ordering inside a kept set
allows. Our own Triton top-k, tried here before, lost to v2 at every size and distribution
measured and was removed (README, the top-k section).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

ENV = "SGLANG_INDEXCACHE_TOPK"
CHOICES = ("upstream", "v2")
DEFAULT = "v2"


def choice_set() -> bool:
    """The variable is given (not empty), rather than `chosen` falling back to the default."""
    return bool(os.environ.get(ENV, "").strip())


def chosen() -> str:
    """The top-k the environment asks for (DEFAULT when unset); a value outside CHOICES is an
    error naming them."""
    value = os.environ.get(ENV, "").strip() or DEFAULT
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: choose one of {', '.join(CHOICES)}")
    return value


def v2_select(logits, lengths, topk: int, row_starts=None):
    """SGLang's v2 JIT top-k through its ragged entry point: row i keeps the top-k of
    logits[i, s : s + lengths[i]] (s = row_starts[i], else 0) as positions in that window,
    -1 padded. It writes the <= 3 columns ahead of each window in place; SGLang's extend
    logits have no reader after the top-k."""
    import torch
    from sglang.kernels.ops.attention.dsv4.topk import topk_transform_ragged_v2

    rows = logits.shape[0]
    out = logits.new_empty((rows, topk), dtype=torch.int32)
    zeros = torch.zeros(rows, dtype=torch.int32, device=logits.device)
    topk_transform_ragged_v2(logits, lengths.to(torch.int32), out_offsets=zeros, out_indices=out,
                             row_starts=None if row_starts is None else row_starts.to(torch.int32))
    return out


class ExtendTopK:
    """Stands in for SGLang's `DSATopKBackend` in an extend's indexer metadata: a fused PAGED
    `topk_transform` it can serve runs `select` (default `v2_select`) and `paged`; anything
    else is SGLang's backend's."""

    def __init__(self, upstream, kind: str = "v2", select: Optional[Callable] = None):
        if kind not in CHOICES[1:]:
            raise ValueError(f"top-k kind {kind!r}: choose one of {', '.join(CHOICES[1:])}")
        self.upstream = upstream
        self.select = select or v2_select
        self.calls = 0  # top-k calls this backend ran (tests, and the per-forward check in a profile)

    def __getattr__(self, name):
        return getattr(self.upstream, name)

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
            and method == TopkTransformMethod.PAGED  # RAGGED: SGLang runs v2 itself
            and (batch_idx_list is None or rows_of_requests)
            and logits.dim() == 2 and logits.dtype == torch.float32 and logits.stride(1) == 1
            and 0 < topk <= 2048 and topk & (topk - 1) == 0 and lengths.shape[0] == logits.shape[0]
            and cu_seqlens_q_topk is not None and getattr(attn_metadata, "page_table_1", None) is not None
            # the kernel reads each row from a 16-byte-aligned base
            and logits.stride(0) % 4 == 0 and logits.data_ptr() % 16 == 0
        )
        if not ours:
            return self.upstream.topk_transform(
                logits=logits, lengths=lengths, topk=topk, topk_transform_method=topk_transform_method,
                attn_metadata=attn_metadata, cu_seqlens_q_topk=cu_seqlens_q_topk,
                topk_indices_offset=topk_indices_offset, row_starts=row_starts,
                batch_idx_list=batch_idx_list, force_unfused_topk=force_unfused_topk)
        self.calls += 1
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
