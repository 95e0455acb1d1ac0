"""Which top-k a Full layer's extend runs under the CUDA `indexcache` backend.

SGLang 0.5.23 runs its v2 JIT top-k (the DeepSeek-V4 kernel) for RAGGED (FP8 KV) extends and
for decode, but keeps PAGED (bf16 KV) extends on its legacy `fast_topk_transform_fused`.
`SGLANG_INDEXCACHE_TOPK` picks what plain extends (prefill, a turn on a cached prefix; not
decode, not speculative verify or draft) with a PAGED top-k run:

- `v2-paged` (the default since session 26): v2's selection and the page-table map in one
  kernel, `csrc/paged_topk.cuh` (SGLang's ragged k-pool kernel with pools of one token,
  compiled by SGLang's JIT). Row b reads page_table_1[row_index[b]], row_index being the
  forward's `token_to_batch_idx` (SGLang's row -> request map) or the chunked call's
  `batch_idx_list`. A call without a usable row map takes `v2`'s route.
- `v2` (the default from session 21 to session 25; results of those sessions name it): v2
  through its ragged entry point (`topk_transform_ragged_v2`), which returns kept positions
  in each row's window, then `paged`, a dozen small torch ops mapping them through the
  request's table. On the 78-layer GLM-5.2 shape those ops made a turn of 18 new tokens
  host-bound (session 25: the indexer's host time 22.4 ms against 13.2 ms for `dsa`'s one
  fused kernel, 21 Full layers).
- `upstream`: SGLang's choice, as `dsa` makes it (nothing here runs).

The page-table map is the legacy kernel's (sgl-kernel's `topk_transform_prefill_kernel`):
position p of a row of request b becomes page_table[b, p], -1 stays -1. Every other call goes
to SGLang's backend unchanged: RAGGED (already v2), SGLang's unfused path, prefill context
parallelism's `batch_idx_list` list, a top-k that is not a power of two or is above 2,048, rows
the kernel cannot read (a row stride not a multiple of 4 floats, a first row not 16-byte
aligned). SGLang's own packed PAGED v2 entry point (`topk_transform_packed_v2`) is compiled for
ROCm only in 0.5.23.

The kept set is exact (ties broken by each kernel its own way), so tokens and
log-probabilities stay those of `dsa` within the tolerance that ordering inside a kept set
allows (`tests/test_gpu.py`; `tests/test_topk.py` compares `v2-paged` with `v2` row for row).
On an H200 (`bench topk`, 2,048 rows on a 122,880-token prefix, k 2,048) v2's selection took
0.52 ms against the legacy kernel's 1.04 ms on indexer-like scores, and 0.99 against 3.06 on
scores crowding one fp16 bin (dummy weights). Our own Triton top-k, tried before, lost to v2
at every size and distribution measured and was removed (README, the top-k section). On CPU
the choice does not apply: a kernel set there is refused.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Optional

ENV = "SGLANG_INDEXCACHE_TOPK"
CHOICES = ("upstream", "v2", "v2-paged")
DEFAULT = "v2-paged"
KERNEL = Path(__file__).parent / "csrc" / "paged_topk.cuh"


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


@functools.cache
def paged_kernel():
    """`csrc/paged_topk.cuh`, built by SGLang's JIT after its own v2 top-k source (the build is
    cached on disk like SGLang's kernels; the CUDA backend loads it at start-up)."""
    from sglang.kernels.jit.utils import is_arch_support_pdl, load_jit, make_cpp_args

    args = make_cpp_args(is_arch_support_pdl())
    return load_jit("indexcache_paged_topk", *args, cuda_files=["deepseek_v4/topk_v2.cuh", str(KERNEL)],
                    cuda_wrappers=[("topk", f"::sglang::indexcache::PagedExtendTopK<{args}>::transform")])


def v2_select_paged(logits, lengths, topk: int, page_table, row_index, row_starts=None):
    """v2's selection and the page-table map in one kernel: row b keeps the top-k of
    logits[b, s : s + lengths[b]] (s = row_starts[b], else 0) and writes
    page_table[row_index[b], position] for each kept position, -1 padded. int32 lengths,
    row_index and row_starts; int32 page_table with unit column stride. Writes the <= 3
    columns ahead of each window in place, as `v2_select`."""
    import torch

    out = logits.new_empty((logits.shape[0], topk), dtype=torch.int32)
    paged_kernel().topk(logits, lengths, row_starts, page_table, row_index, out)
    return out


def _int32_rows(t, rows: int) -> bool:
    """t is a contiguous int32 vector of `rows` entries (what the fused kernel reads per row)."""
    import torch

    return isinstance(t, torch.Tensor) and t.dtype == torch.int32 and t.dim() == 1 and t.shape[0] == rows \
        and t.is_contiguous()


class ExtendTopK:
    """Stands in for SGLang's `DSATopKBackend` in an extend's indexer metadata: a fused PAGED
    `topk_transform` it can serve runs `select_paged` (kind `v2-paged`, with a row map) or
    `select` then `paged` (kind `v2`, or no row map); anything else is SGLang's backend's. The
    defaults are the kernels (`v2_select_paged`, `v2_select`); tests hand in torch stand-ins."""

    def __init__(self, upstream, kind: str = DEFAULT, select: Optional[Callable] = None,
                 select_paged: Optional[Callable] = None):
        if kind not in CHOICES[1:]:
            raise ValueError(f"top-k kind {kind!r}: choose one of {', '.join(CHOICES[1:])}")
        self.upstream = upstream
        self.select = select or v2_select
        self.select_paged = (select_paged or v2_select_paged) if kind == "v2-paged" else None
        self.calls = 0  # top-k calls this backend ran (tests, and the per-forward check in a profile)
        self.fused_calls = 0  # of them, through select_paged

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
        if self.select_paged is not None:
            rows = logits.shape[0]
            # each row's request: the chunk's own map, else the forward's (SGLang builds both)
            row_index = batch_idx_list if rows_of_requests else getattr(attn_metadata, "token_to_batch_idx", None)
            if (rows and _int32_rows(row_index, rows) and _int32_rows(lengths, rows)
                    and (row_starts is None or _int32_rows(row_starts, rows))
                    and table.dtype == torch.int32 and table.dim() == 2 and table.stride(1) == 1):
                self.fused_calls += 1
                return self.select_paged(logits, lengths, topk, table, row_index, row_starts=row_starts)
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
