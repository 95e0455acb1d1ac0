"""`bench topk`: the top-k kernels of the indexer's extend path, side by side on one GPU.

A Full layer's extend path scores Q new queries against the L keys each may see and keeps
the k best per row (`[Q, L]` float32 scores, then a top-k with the page-table or ragged
transform). This times every top-k implementation SGLang 0.5.23 can select on the same
scores, and checks each against `torch.topk` (rows whose kept set of values
differs, ties compared as values):

  torch               torch.topk over the masked rows (`--dsa-topk-backend torch`)
  sgl-legacy-paged    sgl-kernel's fast_topk_transform_fused (bf16 KV extend, SGLang's default)
  sgl-legacy-ragged   sgl-kernel's fast_topk_transform_ragged_fused
  sgl-v2-ragged       the DeepSeek-V4 v2 JIT kernel (fp8 KV extend, `SGLANG_OPT_USE_TOPK_V2`)
  flashinfer-ragged   flashinfer.top_k_ragged_transform (`--dsa-topk-backend flashinfer`)
  ours-v2             `SGLANG_INDEXCACHE_TOPK=v2` (`backend/topk.py`): sgl-v2-ragged, then the
                      page-table map in torch ops
  ours-v2-paged       `SGLANG_INDEXCACHE_TOPK=v2-paged` (the default): v2's selection and the
                      map in one kernel (`backend/csrc/paged_topk.cuh`)

The paged ones read one request's page table (the identity, so slots are positions).
(Our own Triton top-k, `filter`, ran here beside them on an H200 until 2026-12-01, lost to
sgl-v2-ragged at every size and distribution, and was removed; its figures stay in the
committed results.) Besides the GPU time, each call's host time is timed alone (`host_ms`:
from the call to its return, the GPU idle before it): a short extend on many layers is
bound by it.

Scores follow the lightning indexer's form, sum_h w[t, h] * relu(q[t, h] . k[s]) on random
bf16 q, k and w (`--dist indexer`), or are plain normal (`normal`) or normal rounded to
bf16 (`bf16`: many ties). Two more stress the kernels whose first pass bins each score by
the top byte of its fp16 cast (a quarter-binade per bin; the legacy kernel keeps at most 4,096
candidates of the threshold bin, sglang#36807): `dummy` is `indexer` scaled to 1e-17, the
magnitude a layer's scores have under SGLang's dummy weights (every parameter uniform in
+-1e-3; transformers' GlmMoeDsa on the flash-12 shape gave |score| <= 1.6e-16, median 1.6e-17:
every score is 0 in fp16, so all fall into one or two bins), which is what every
`--load-format dummy` benchmark's top-k sees; `offset` is `indexer` + 32, scores sharing a
large common part (most of a row in one or two bins). Rows are causal, as in an extend: row
i of Q new tokens on a prefix of P cached ones sees P + i + 1 keys. Medians of `--repeats` timed calls (CUDA
events) after warm-up calls; an implementation that fails is recorded with its error.

    python -m sglang_indexcache.bench topk --out out/topk --rows 1 2048 8192 --prefix 122880
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

# FlashInfer's last: its first call builds its JIT module (over 4 minutes on an H200 on 2026-12-01)
IMPLS = ("torch", "sgl-legacy-paged", "sgl-legacy-ragged", "sgl-v2-ragged", "ours-v2", "ours-v2-paged",
         "flashinfer-ragged")
DISTS = ("indexer", "normal", "bf16", "dummy", "offset")
DUMMY_SCALE = 1e-17  # |score| under SGLang's dummy weights (see the module docstring)
OFFSET = 32.0
_CHUNK = 256  # rows scored or checked at once (bounds the [rows, heads, keys] intermediate)


def make_scores(rows: int, prefix: int, dist: str, device: str, seed: int = 0,
                heads: int = 32, dim: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 scores [rows, W] and int32 lengths (row i sees prefix + i + 1 keys). W is
    prefix + rows rounded up to 4 columns: rows start 16-byte aligned, as DeepGEMM's logits do
    (the v2 kernel requires it); the extra columns lie past every row's length."""
    g = torch.Generator(device=device).manual_seed(seed)
    width = -(-(prefix + rows) // 4) * 4
    if dist in ("indexer", "dummy", "offset"):
        dt = torch.bfloat16 if device == "cuda" else torch.float32
        k = torch.randn(width, dim, generator=g, device=device).to(dt)
        scores = torch.empty(rows, width, device=device)
        for r0 in range(0, rows, _CHUNK):
            r1 = min(rows, r0 + _CHUNK)
            q = (torch.randn(r1 - r0, heads, dim, generator=g, device=device) / dim ** 0.5).to(dt)
            w = torch.randn(r1 - r0, heads, 1, generator=g, device=device) / heads ** 0.5
            scores[r0:r1] = (torch.relu(q @ k.T).float() * w).sum(1)
        if dist == "dummy":
            scores *= DUMMY_SCALE
        elif dist == "offset":
            scores += OFFSET
    elif dist in ("normal", "bf16"):
        scores = torch.randn(rows, width, generator=g, device=device)
        if dist == "bf16":
            scores = scores.bfloat16().float()
    else:
        raise ValueError(f"unknown --dist {dist!r}; choose from {DISTS}")
    lengths = torch.arange(prefix + 1, prefix + rows + 1, dtype=torch.int32, device=device)
    return scores, lengths


def fp16_bin(scores: torch.Tensor) -> torch.Tensor:
    """Each score's coarse bin in SGLang's legacy top-k: the top byte of its fp16 cast (sign,
    exponent, 2 mantissa bits; a quarter-binade). The `dummy` and `offset` dists crowd it."""
    return (scores.half().view(torch.int16).int() >> 8) & 0xFF


def _masked(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    cols = torch.arange(scores.shape[1], device=scores.device)
    return scores.masked_fill(cols[None, :] >= lengths[:, None].long(), float("-inf"))


def mismatched_rows(scores: torch.Tensor, lengths: torch.Tensor, k: int, idx: torch.Tensor) -> int:
    """Rows whose k kept columns are not valid, distinct columns holding the k largest values
    (compared as sorted values, so a different choice among equal values is no mismatch)."""
    bad = 0
    for r0 in range(0, scores.shape[0], _CHUNK):
        s, n, i = scores[r0:r0 + _CHUNK], lengths[r0:r0 + _CHUNK], idx[r0:r0 + _CHUNK].long()
        m = _masked(s, n)
        ref = m.topk(k, dim=1).values
        valid = (i >= 0) & (i < n[:, None].long())
        got = torch.where(valid, m.gather(1, i.clamp(min=0)), torch.full_like(ref, float("-inf")))
        srt = i.sort(dim=1).values
        distinct = (srt[:, 1:] != srt[:, :-1]).all(dim=1)
        same = (got.sort(dim=1, descending=True).values == ref).all(dim=1)
        bad += int((~(valid.all(dim=1) & distinct & same)).sum())
    return bad


def implementation(name: str, rows: int, width: int, k: int, device: str) -> Callable:
    """fn(scores, lengths) -> int32 [rows, k] columns, for one implementation."""
    zeros = torch.zeros(rows, dtype=torch.int32, device=device)
    if name == "torch":
        return lambda s, n: _masked(s, n).topk(k, dim=1).indices.to(torch.int32)
    if name == "sgl-legacy-paged":
        from sgl_kernel import fast_topk_transform_fused

        table = torch.arange(width, dtype=torch.int32, device=device)[None, :]  # one request, identity pages
        cu = torch.tensor([0, rows], dtype=torch.int32, device=device)
        return lambda s, n: fast_topk_transform_fused(score=s, lengths=n, page_table_size_1=table,
                                                      cu_seqlens_q=cu, topk=k, row_starts=None)
    if name == "sgl-legacy-ragged":
        from sgl_kernel import fast_topk_transform_ragged_fused

        return lambda s, n: fast_topk_transform_ragged_fused(score=s, lengths=n, topk_indices_offset=zeros,
                                                             topk=k, row_starts=zeros)
    if name == "sgl-v2-ragged":
        from sglang.kernels.ops.attention.dsv4.topk import topk_transform_ragged_v2

        def v2(s, n):
            out = torch.empty(rows, k, dtype=torch.int32, device=device)
            topk_transform_ragged_v2(s, n, out_offsets=zeros, out_indices=out, row_starts=None)
            return out
        return v2
    if name in ("ours-v2", "ours-v2-paged"):
        from sglang_indexcache.backend.topk import paged, v2_select, v2_select_paged

        table = torch.arange(width, dtype=torch.int32, device=device)[None, :]  # one request, identity pages
        if name == "ours-v2":
            cu = torch.tensor([0, rows], dtype=torch.int32, device=device)
            return lambda s, n: paged(v2_select(s, n, k), table, cu)
        return lambda s, n: v2_select_paged(s, n, k, table, zeros)
    if name == "flashinfer-ragged":
        import flashinfer

        return lambda s, n: flashinfer.top_k_ragged_transform(s, zeros, n, k, dsa_graph_safe=True)
    raise ValueError(f"unknown implementation {name!r}; choose from {IMPLS}")


def _host_time(fn: Callable, repeats: int) -> list:
    """ms from each call to its return, the GPU idle before it (what the host spends enqueuing)."""
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize()
    return out


def _time(fn: Callable, warmup: int, repeats: int, cuda: bool) -> list:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure(rows: int, prefix: int, k: int, dist: str, impls, *, device: str, repeats: int,
            warmup: int = 3, seed: int = 0) -> dict:
    """One shape: every implementation's median ms, its rate over the scores it must read, and
    its mismatched rows against torch.topk."""
    scores, lengths = make_scores(rows, prefix, dist, device, seed)
    read = int(lengths.sum()) * 4  # bytes of scores a top-k must read at least once
    entry = {"rows": rows, "prefix": prefix, "k": k, "dist": dist, "score_bytes": read, "impls": {}}
    for name in impls:
        rec: dict = {}
        try:
            fn = implementation(name, rows, scores.shape[1], k, device)
            idx = fn(scores, lengths)
            rec["mismatched_rows"] = mismatched_rows(scores, lengths, k, idx)
            ms = _time(lambda: fn(scores, lengths), warmup, repeats, device == "cuda")
            rec.update(ms=statistics.median(ms), all_ms=ms, tb_per_s=read / (statistics.median(ms) * 1e-3) / 1e12)
            if device == "cuda":
                rec["host_ms"] = statistics.median(_host_time(lambda: fn(scores, lengths), repeats))
        except Exception as e:  # recorded, not raised: one missing kernel must not hide the others
            rec["error"] = f"{type(e).__name__}: {e}"[:500]
        entry["impls"][name] = rec
        print(f"  rows {rows} prefix {prefix} {dist} {name}: "
              + (f"{rec['ms']:.3f} ms, {rec['tb_per_s']:.2f} TB/s, host {rec.get('host_ms', 0):.3f} ms, "
                 f"mismatched rows {rec['mismatched_rows']}"
                 if "ms" in rec else rec["error"]), flush=True)
    return entry


def run(args) -> int:
    from sglang_indexcache.bench.common import gpu_info, versions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench topk times GPU kernels: no CUDA device here (--device cpu: the torch path only)")
    impls = args.impls or (IMPLS if args.device == "cuda" else ("torch",))
    unknown = [n for n in impls if n not in IMPLS]
    if unknown:
        raise SystemExit(f"--impls {' '.join(unknown)}: choose from {', '.join(IMPLS)}")
    results = {
        "workload": "topk",
        "device": args.device,
        "gpu": gpu_info() if args.device == "cuda" else None,
        "versions": versions(),
        "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]]),
        "repeats": args.repeats,
        "shapes": [],
    }
    for dist in args.dist:
        for rows in args.rows:
            results["shapes"].append(measure(rows, args.prefix, args.k, dist, impls, device=args.device,
                                             repeats=args.repeats, seed=args.seed))
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    plot(results, out / "topk.png")
    return 0


def table(results: dict) -> str:
    lines = [f"top-k kernels ({results.get('device')}, {(results.get('gpu') or {}).get('name', '')}), "
             f"median of {results.get('repeats')}; mismatched rows against torch.topk",
             f"  {'dist':8} {'rows':>6} {'prefix':>7} {'impl':18} {'ms':>9} {'TB/s':>6} {'x best':>7} {'bad rows':>8}"
             f" {'host ms':>8}"]
    for e in results["shapes"]:
        times = [r["ms"] for r in e["impls"].values() if "ms" in r and r.get("mismatched_rows") == 0]
        best = min(times) if times else None
        for name, r in e["impls"].items():
            head = f"  {e['dist']:8} {e['rows']:>6} {e['prefix']:>7} {name:18}"
            if "ms" not in r:
                lines.append(f"{head} {'failed':>9}  {r['error'][:80]}")
                continue
            rel = f"{r['ms'] / best:.2f}" if best else "-"
            host = f"{r['host_ms']:>8.3f}" if "host_ms" in r else f"{'-':>8}"
            lines.append(f"{head} {r['ms']:>9.3f} {r['tb_per_s']:>6.2f} {rel:>7} {r['mismatched_rows']:>8} {host}")
    return "\n".join(lines)


def plot(results: dict, png: Path) -> None:
    """One panel per (dist, rows): each implementation's median ms (failed ones left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = results["shapes"]
    fig, axes = plt.subplots(1, max(1, len(shapes)), figsize=(4 * max(1, len(shapes)), 4), squeeze=False)
    for e, ax in zip(shapes, axes[0]):
        ok = {n: r for n, r in e["impls"].items() if "ms" in r}
        ax.bar(range(len(ok)), [r["ms"] for r in ok.values()],
               color=["tab:red" if r["mismatched_rows"] else "tab:blue" for r in ok.values()])
        ax.set_xticks(range(len(ok)), list(ok), rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{e['rows']} x {e['prefix']}+ ({e['dist']}), k {e['k']}", fontsize=8)
        ax.set_ylabel("ms (red: wrong rows)")
    gpu = (results.get("gpu") or {}).get("name") or results.get("device")
    fig.suptitle(f"indexer top-k kernels on {gpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
