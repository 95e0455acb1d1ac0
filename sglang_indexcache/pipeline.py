"""Pipeline stages and IndexCache: what each handoff costs, and a partition that needs none.

Where a pipeline stage starts on a Shared layer, its source is on the previous stage. The
three ways out, as `plan --pp-size N` prints them (`handoff_report`):

- recompute: the stage's first layer is promoted to Full (one more indexer layer per such
  stage), the default;
- transfer: the previous stage's top-k crosses the boundary, `index_topk` int32 indices per
  token (SGLang's own proxy tensors carry it; the receiving stage's Shared layers read only
  the tensor received for this forward: `TopkStore.receive`);
- align: a layer partition in which every stage starts on a Full layer, installed through
  SGLang's own `SGLANG_PP_LAYER_PARTITION` (`aligned_partition`); no promotion, nothing sent;
- auto: transfer wherever a stage starts on a Shared layer (`choose_handoff`; why: `AUTO`).

Pure arithmetic on the schedule: no SGLang import (SGLang's even split is mirrored by
`even_partition` and checked against `get_pp_indices` in the tests).
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence

from sglang_indexcache.schedule import PP_HANDOFFS

# What `auto` picks, from the PP 2 table (`bench pp`, benchmarks/results/h200x2-2026-11-30-session7/pp;
# two H200s over NVLink, GLM-4.7-Flash shape, FSSSFSSSFSSS, stage 1 starting on Shared layer 6,
# one prefill at a time, chunked by 16K): transfer was the fastest handoff at 16K, 64K and
# 128K (128K: 1.324 s vs recompute 1.362 s vs align 1.558 s). SGLang's chunked prefill
# pipelines one long prompt over the stages, so the heavier stage sets the time: recompute
# adds an indexer to the receiving stage, align moves whole decoder layers onto one stage,
# transfer adds only the copy of `index_topk` int32 per token (1 GiB for 128K tokens). Where
# that copy is slow (pipeline stages across nodes on a slow link) ask for recompute or align;
# `plan --pp-size N` prints each one's cost. The default stays recompute: DESIGN's contract
# takes a transfer only when explicitly chosen (auto is such a choice).
AUTO = "auto: transfer (the fastest handoff of the PP 2 table at 16K/64K/128K)"


def even_partition(num_layers: int, pp_size: int) -> list:
    """Layers per stage as SGLang splits them without SGLANG_PP_LAYER_PARTITION: the last
    `num_layers % pp_size` stages get one more."""
    base, extra = divmod(num_layers, pp_size)
    return [base + (1 if k >= pp_size - extra else 0) for k in range(pp_size)]


def starts_of(partition: Sequence[int]) -> list:
    return [sum(partition[:k]) for k in range(len(partition))]


def aligned_partition(full: Sequence[bool], pp_size: int) -> Optional[dict]:
    """The partition closest to SGLang's even split whose every stage starts on a layer with
    `full[layer]` True: fewest layers moved (sum over stage starts of the distance to the even
    start), then the smallest largest stage. None when no such partition exists (fewer Full
    layers than stages after layer 0)."""
    n = len(full)
    even = starts_of(even_partition(n, pp_size))
    candidates = [i for i in range(1, n) if full[i]]
    best = None
    for starts in itertools.combinations(candidates, pp_size - 1):
        bounds = [0, *starts, n]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        moved = [abs(s - e) for s, e in zip(starts, even[1:])]
        key = (sum(moved), max(sizes))
        if best is None or key < best[0]:
            best = (key, sizes, moved)
    if best is None:
        return None
    _, sizes, moved = best
    return {"partition": sizes, "starts": starts_of(sizes), "moved": moved, "even": even_partition(n, pp_size),
            "env": "SGLANG_PP_LAYER_PARTITION=" + ",".join(map(str, sizes))}


def handoff_report(full: Sequence[bool], pp_size: int, index_topk: int, stage_starts: Sequence[int]) -> dict:
    """Per handoff, for the stage starts in force (`stage_starts`, SGLang's partition): the
    stages that start on a Shared layer, the indexer layers `recompute` adds, the bytes per
    token `transfer` would send across each such boundary, and the `align` partition."""
    shared_starts = [s for s in stage_starts[1:] if not full[s]]
    return {
        "stage_starts": list(stage_starts),
        "shared_stage_starts": shared_starts,
        "recompute_extra_indexer_layers": len(shared_starts),
        "transfer_bytes_per_token": {str(s): index_topk * 4 for s in shared_starts},
        "align": aligned_partition(full, pp_size),
    }


def report_lines(report: dict, pp_size: int) -> list:
    starts = report["stage_starts"]
    lines = [f"pipeline, PP {pp_size}: stages start at layers {', '.join(map(str, starts))}"]
    if not report["shared_stage_starts"]:
        lines.append("  every stage starts on a Full layer: no handoff needed")
        return lines
    at = ", ".join(map(str, report["shared_stage_starts"]))
    lines.append(f"  recompute (default): layer(s) {at} promoted to Full, "
                 f"+{report['recompute_extra_indexer_layers']} indexer layer(s)")
    per = ", ".join(f"into layer {s}: {b} B" for s, b in report["transfer_bytes_per_token"].items())
    lines.append(f"  transfer: top-k per token {per}")
    a = report["align"]
    if a is None:
        lines.append("  align: no partition starts every stage on a Full layer")
    else:
        lines.append(f"  align: {a['env']} (stages start at {', '.join(map(str, a['starts']))}; "
                     f"layers moved per boundary {a['moved']}; even split {a['even']})")
    return lines


def choose_handoff(
    full: Sequence[bool],
    pp_size: int,
    asked: str,
    *,
    stage_starts: Sequence[int],
    user_partition: bool = False,
) -> dict:
    """The handoff a launch runs and the partition it installs (None: SGLang's in force).

    `full`: each layer's configured role (True: runs its indexer); `stage_starts`: the stages'
    first layers under the partition in force (SGLang's even split, or the user's
    SGLANG_PP_LAYER_PARTITION when `user_partition`). `align` keeps a user's partition and
    then follows recompute's rule; `auto` transfers wherever a stage starts on a Shared layer
    (`AUTO`). Raises ValueError when `align` is asked and no aligned partition exists."""
    if asked not in PP_HANDOFFS:
        raise ValueError(f"--index-cache-pp-handoff must be one of {list(PP_HANDOFFS)}, got {asked!r}")
    shared_starts = [s for s in stage_starts[1:] if not full[s]]
    if pp_size == 1 or asked in ("recompute", "transfer"):
        return {"handoff": asked, "partition": None, "why": None}
    if user_partition:
        if asked == "auto" and shared_starts:
            return {"handoff": "transfer", "partition": None,
                    "why": f"{AUTO}; SGLANG_PP_LAYER_PARTITION is set by the user and kept, stage(s) starting on "
                           f"Shared layer(s) {shared_starts}"}
        return {"handoff": "recompute", "partition": None,
                "why": f"{asked}: SGLANG_PP_LAYER_PARTITION is set by the user and kept; a stage starting on a "
                       "Shared layer is promoted (recompute)"}
    if not shared_starts:
        return {"handoff": "recompute", "partition": None,
                "why": f"{asked}: SGLang's split already starts every stage on a Full layer"}
    if asked == "auto":
        return {"handoff": "transfer", "partition": None,
                "why": f"{AUTO}; stage(s) starting on Shared layer(s) {shared_starts}"}
    aligned = aligned_partition(full, pp_size)
    if aligned is None:
        raise ValueError(
            f"--index-cache-pp-handoff align: no partition of {len(full)} layers into {pp_size} stages starts "
            f"every stage on a Full layer ({sum(full[1:])} Full layers after layer 0); use recompute or transfer")
    return {"handoff": "align", "partition": aligned,
            "why": f"align: {aligned['env']}, layers moved per boundary {aligned['moved']}"}
