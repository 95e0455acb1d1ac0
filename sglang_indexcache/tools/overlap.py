"""Top-k overlap between layers: how much a Shared layer would lose by reusing another's.

For every pair of layers (i, j) that own an indexer, the mean over query positions of
|T_i ∩ T_j| / k, where T_l is layer l's own top-k (every indexer runs). Only positions
that see at least k keys count (earlier ones select every key they see: overlap 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import torch


def overlap_matrix(topk: Dict[int, torch.Tensor], k: int) -> Dict[int, Dict[int, float]]:
    """{i: {j: overlap}} for one sequence; topk[l] is [S, k] (position s selects keys <= s)."""
    layers = sorted(topk)
    S = next(iter(topk.values())).shape[0]
    rows = torch.arange(S)
    full = rows >= k - 1  # positions with at least k visible keys
    if not bool(full.any()):
        raise ValueError(f"sequence of {S} tokens is shorter than index_topk {k}: no sparse position")
    n_keys = S
    masks = {}
    for l in layers:
        t = topk[l][full].long()  # [P, k]
        m = torch.zeros(t.shape[0], n_keys + 1, dtype=torch.bool)
        m.scatter_(1, t.clamp(min=-1) % (n_keys + 1), True)  # -1 (unused) lands in the spare column
        m[:, n_keys] = False
        masks[l] = m
    out: Dict[int, Dict[int, float]] = {}
    for i in layers:
        out[i] = {}
        for j in layers:
            inter = (masks[i] & masks[j]).sum(dim=1).double() / k
            out[i][j] = float(inter.mean())
    return out


def analyse(model_path, sequences: Sequence[Sequence[int]], device: str = "cpu") -> dict:
    from sglang_indexcache.tools.hf import load, own_topk

    model, ctl = load(model_path, device=device)
    k = int(model.config.index_topk)
    per_seq = [overlap_matrix(own_topk(model, ctl, seq), k) for seq in sequences]
    layers = sorted(per_seq[0])
    matrix = [[sum(m[i][j] for m in per_seq) / len(per_seq) for j in layers] for i in layers]
    idx = {l: n for n, l in enumerate(layers)}
    adjacent = [
        {"layer": b, "previous": a, "overlap": matrix[idx[a]][idx[b]]}
        for a, b in zip(layers, layers[1:])
    ]
    return {
        "model": str(model_path),
        "index_topk": k,
        "sequences": len(sequences),
        "tokens_per_sequence": [len(s) for s in sequences],
        "layers": layers,
        "matrix": matrix,
        "adjacent": adjacent,
        "adjacent_mean": sum(a["overlap"] for a in adjacent) / max(len(adjacent), 1),
    }


def summary(result: dict) -> str:
    lines = [
        f"top-k overlap |T_i ∩ T_j| / k, k={result['index_topk']}, {result['sequences']} sequence(s); "
        f"adjacent layers mean {result['adjacent_mean']:.3f}"
    ]
    for a in result["adjacent"]:
        lines.append(f"  layer {a['layer']:>3} vs {a['previous']:>3}: {a['overlap']:.3f}")
    return "\n".join(lines)


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    im = axes[0].imshow(result["matrix"], vmin=0, vmax=1, cmap="viridis")
    axes[0].set_xticks(range(len(layers)), layers, fontsize=7)
    axes[0].set_yticks(range(len(layers)), layers, fontsize=7)
    axes[0].set_xlabel("layer j")
    axes[0].set_ylabel("layer i")
    axes[0].set_title(f"top-k overlap (k={result['index_topk']})")
    fig.colorbar(im, ax=axes[0])
    adj = result["adjacent"]
    axes[1].bar([a["layer"] for a in adj], [a["overlap"] for a in adj])
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("layer l")
    axes[1].set_ylabel("overlap with layer l-1")
    axes[1].set_title("adjacent layers")
    fig.suptitle(result["model"], fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "overlap.json").write_text(json.dumps(result, indent=2) + "\n")
