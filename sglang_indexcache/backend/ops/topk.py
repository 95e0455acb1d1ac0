"""Exact top-k of long score rows in Triton: sample, filter, select (a candidate for issue 20).

The indexer's extend path scores Q new queries against L cached keys and keeps the k best
of each row. SGLang's top-k kernels make several passes over each row (a radix select); on
an H200 at Q = 2,048, L = 122,880, k = 2,048 the legacy kernel ran at 0.37 TB/s, 13x the
time of one read of the scores (`bench/roofline.py`). This kernel reads each row once:

1. **Sample.** A row longer than `cap` (4 k) has `SAMPLE` evenly spaced scores taken; the
   one ranked about 2 k * SAMPLE / L among them is a threshold `t` that about 2 k of the
   row's scores reach.
2. **Filter.** One pass over the row writes every score >= t (and its column) into a
   per-program buffer of `cap` entries, in column order; a row of at most `cap` scores
   keeps all of them.
3. **Select.** A radix select (8 bits a pass, 4 passes) over the buffer finds the exact
   k-th largest score T and how many of the scores equal to T to keep; a last pass over the
   buffer writes the columns of the scores > T and the first of those == T.

When the filter kept fewer than k scores, or more than `cap`, the sample misled it (ties,
or a row whose order the even spacing aliases with): the select then runs over the whole
row instead (4 counting passes and a writing pass), so the result is exact either way; only
the time changes.

Scores are compared as float32 through an order-preserving int32 key, so the kept set is
exactly the top-k by value; among scores equal to the k-th, the lowest columns are kept
(SGLang's kernels break such ties their own way: compare as sets of values). Output: per
row, k int32 columns (relative to the row's start) plus the row's offset, unordered; a
row with no more than k scores gets all of them, then -1.

Runs on CUDA; on CPU only under Triton's interpreter (`TRITON_INTERPRET=1` set before
triton is imported: `tests/test_topk.py` runs it so, in a subprocess).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

SAMPLE = 1024  # scores sampled per long row for the threshold
BLOCK = 2048  # scores a program handles per step


@triton.jit
def _key(x):
    """float32 -> int32 with the same order (NaN aside): positive floats keep their bits,
    negative ones flip all but the sign."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


@triton.jit
def _load_keys(src, cols_src, idx, n, FROM_ROW: tl.constexpr):
    """Keys and columns of entries idx of a source: the row's float scores (FROM_ROW) or the
    buffer of filtered keys and columns. Entries past n get the smallest int32 (no score)."""
    m = idx < n
    if FROM_ROW:
        keys = tl.where(m, _key(tl.load(src + idx, mask=m, other=0.0)), -2147483648)
        cols = idx
    else:
        keys = tl.load(src + idx, mask=m, other=-2147483648)
        cols = tl.load(cols_src + idx, mask=m, other=0)
    return keys, cols


@triton.jit
def _select(src, cols_src, n, need, BLOCK: tl.constexpr, FROM_ROW: tl.constexpr):
    """The need-th largest key among n entries, and how many entries equal to it are among
    the need largest: 4 passes of an 8-bit radix select, counting with a histogram."""
    bins = tl.arange(0, 256)
    prefix = need * 0  # the threshold's high bits found so far, as the unsigned order u
    for p in tl.static_range(4):
        hist = tl.zeros([256], dtype=tl.int32)
        for start in range(0, n, BLOCK):
            keys, _ = _load_keys(src, cols_src, start + tl.arange(0, BLOCK), n, FROM_ROW)
            u = keys ^ -2147483648  # unsigned order in int32 bits: no score -> 0
            digit = (u >> (24 - 8 * p)) & 255
            keep = keys != -2147483648
            if p > 0:
                keep = keep & ((u >> (32 - 8 * p)) == (prefix >> (32 - 8 * p)))
            hist += tl.histogram(digit, 256, mask=keep)
        at_or_above = tl.sum(hist, axis=0) - tl.cumsum(hist, axis=0) + hist
        b = tl.max(tl.where(at_or_above >= need, bins, -1), axis=0)
        need -= tl.sum(tl.where(bins > b, hist, 0), axis=0)
        prefix = prefix | (b << (24 - 8 * p))
    return prefix ^ -2147483648, need


@triton.jit
def _emit(src, cols_src, n, t_key, ties, out_row, offset, BLOCK: tl.constexpr, FROM_ROW: tl.constexpr):
    """Write the columns (+ offset) of the keys > t_key and of the first `ties` keys == t_key."""
    written = ties * 0
    seen_ties = ties * 0
    for start in range(0, n, BLOCK):
        keys, cols = _load_keys(src, cols_src, start + tl.arange(0, BLOCK), n, FROM_ROW)
        eq = (keys == t_key).to(tl.int32)
        take = (keys > t_key) | ((eq != 0) & (seen_ties + tl.cumsum(eq, axis=0) <= ties))
        pos = written + tl.cumsum(take.to(tl.int32), axis=0) - 1
        tl.store(out_row + pos, cols + offset, mask=take)
        written += tl.sum(take.to(tl.int32), axis=0)
        seen_ties += tl.sum(eq, axis=0)


@triton.jit
def _filter_topk_kernel(
    scores, stride_s, lengths, starts, offsets, out, stride_o, buf_keys, buf_cols, rows,
    K: tl.constexpr, CAP: tl.constexpr, SAMPLE: tl.constexpr, BLOCK: tl.constexpr,
    HAS_STARTS: tl.constexpr, HAS_OFFSETS: tl.constexpr,
):
    pid = tl.program_id(0)
    bk = buf_keys + pid * CAP
    bc = buf_cols + pid * CAP
    for r in range(pid, rows, tl.num_programs(0)):
        n = tl.load(lengths + r)
        row = scores + tl.cast(r, tl.int64) * stride_s
        if HAS_STARTS:
            row += tl.load(starts + r)
        offset = n * 0
        if HAS_OFFSETS:
            offset = tl.load(offsets + r)
        out_row = out + tl.cast(r, tl.int64) * stride_o
        if n <= K:  # every score is kept, the rest of the row is -1
            for start in range(0, K, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                tl.store(out_row + cols, tl.where(cols < n, cols + offset, -1), mask=cols < K)
        else:
            t = n * 0 - 2147483647  # every score passes the filter (no score is -2147483648)
            if n > CAP:  # sample SAMPLE evenly spaced scores, keep the one ranked ~2K*SAMPLE/n
                j = tl.arange(0, SAMPLE)
                sample = _key(tl.load(row + (j.to(tl.int64) * n // SAMPLE)))
                tl.store(bk + j, sample)
                tl.debug_barrier()
                rank = tl.minimum((2 * K * SAMPLE + n - 1) // n, SAMPLE)
                t, _ = _select(bk, bc, SAMPLE, rank, SAMPLE, False)
                tl.debug_barrier()
            kept = n * 0
            for start in range(0, n, BLOCK):
                keys, cols = _load_keys(row, row, start + tl.arange(0, BLOCK), n, True)
                take = keys >= t
                pos = kept + tl.cumsum(take.to(tl.int32), axis=0) - 1
                tl.store(bk + pos, keys, mask=take & (pos < CAP))
                tl.store(bc + pos, cols, mask=take & (pos < CAP))
                kept += tl.sum(take.to(tl.int32), axis=0)
            tl.debug_barrier()
            if (kept >= K) & (kept <= CAP):
                t_key, ties = _select(bk, bc, kept, K, BLOCK, False)
                _emit(bk, bc, kept, t_key, ties, out_row, offset, BLOCK, False)
            else:  # the sample misled the filter: select over the whole row
                t_key, ties = _select(row, row, n, K, BLOCK, True)
                _emit(row, row, n, t_key, ties, out_row, offset, BLOCK, True)
            tl.debug_barrier()


def filter_topk(
    scores: torch.Tensor,
    lengths: torch.Tensor,
    k: int,
    *,
    row_starts: Optional[torch.Tensor] = None,
    offsets: Optional[torch.Tensor] = None,
    programs: Optional[int] = None,
    block: int = BLOCK,
    warps: int = 8,
    per_sm: int = 4,
) -> torch.Tensor:
    """Top-k columns of each row of `scores` [R, W] (float32, unit column stride) among its
    first lengths[r] entries from row_starts[r] (default 0); int32 [R, k], each + offsets[r]
    (default 0), unordered, -1 past a short row's length.

    Tuning (the result does not depend on it): `block` scores per step, `warps` per program,
    `per_sm` programs per multiprocessor (`programs` overrides the count); each program
    loops over rows with a buffer of max(4k, SAMPLE) keys and columns of its own."""
    if scores.dim() != 2 or scores.dtype != torch.float32 or scores.stride(1) != 1:
        raise ValueError(f"scores must be a float32 [rows, width] tensor with unit column stride, got "
                         f"{scores.dtype} {tuple(scores.shape)} strides {scores.stride()}")
    if k < 1 or k & (k - 1):
        raise ValueError(f"k must be a power of two, got {k}")
    if block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two of at least 16, got {block}")
    rows = scores.shape[0]
    out = torch.empty((rows, k), dtype=torch.int32, device=scores.device)
    if rows == 0:
        return out
    cap = max(4 * k, SAMPLE)
    if programs is None:
        programs = per_sm * (_sm_count(scores.device) if scores.is_cuda else 1)
    programs = max(1, min(rows, programs))
    buf_keys = torch.empty((programs, cap), dtype=torch.int32, device=scores.device)
    buf_cols = torch.empty((programs, cap), dtype=torch.int32, device=scores.device)
    i32 = lambda t: t.to(device=scores.device, dtype=torch.int32).contiguous()  # noqa: E731
    lengths = i32(lengths)
    starts = i32(row_starts) if row_starts is not None else lengths
    offs = i32(offsets) if offsets is not None else lengths
    _filter_topk_kernel[(programs,)](
        scores, scores.stride(0), lengths, starts, offs, out, out.stride(0), buf_keys, buf_cols, rows,
        K=k, CAP=cap, SAMPLE=SAMPLE, BLOCK=min(block, cap),
        HAS_STARTS=row_starts is not None, HAS_OFFSETS=offsets is not None,
        num_warps=warps,
    )
    return out


_SMS: dict = {}


def _sm_count(device) -> int:
    if device not in _SMS:
        _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SMS[device]
