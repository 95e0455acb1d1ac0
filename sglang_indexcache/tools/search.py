"""The paper's training-free greedy search for an IndexCache pattern.

Start with every layer that owns an indexer Full. At each step, try flipping each Full
layer that may flip (never layer 0, nor a fixed layer such as a pipeline stage's first)
to Shared, score each candidate's LM loss on a fixed calibration set, and commit the
flip with the lowest loss. Stop at the smallest target retention. Every evaluated
pattern's loss is kept in a state file, so an interrupted search resumes where it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Sequence


def flip(pattern: str, layer: int) -> str:
    return pattern[:layer] + "S" + pattern[layer + 1 :]


def targets_to_counts(targets: Sequence[float], num_layers: int, min_full: int) -> List[int]:
    """Retentions (fractions of layers kept Full, e.g. 0.5) or counts (>= 1) to Full counts."""
    counts = []
    for t in targets:
        n = int(t) if t >= 1 else max(1, math.ceil(t * num_layers))
        counts.append(max(n, min_full))
    return sorted(set(counts), reverse=True)


def evaluations_for(num_layers: int, target: float, fixed_full: int = 1) -> int:
    """Losses `greedy_search` computes from all Full down to `target` (a retention or a count):
    the baseline, then at each step one candidate per Full layer that is not fixed."""
    last = targets_to_counts([target], num_layers, fixed_full)[-1]
    return 1 + sum(full - fixed_full for full in range(last + 1, num_layers + 1))


def evaluation_key(evaluator: str, model_path, sequences: Sequence[Sequence[int]], extra: Sequence[str] = ()) -> str:
    """What a loss depends on: the evaluator, the model (its config and every file's name, size
    and modification time: a retrained checkpoint is another model), the calibration tokens."""
    h = hashlib.sha256(json.dumps([evaluator, list(extra)]).encode())
    root = Path(model_path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update((root / "config.json").read_bytes() if (root / "config.json").exists() else b"")
    h.update(json.dumps([list(s) for s in sequences]).encode())
    return h.hexdigest()


class _State:
    """Every evaluated pattern's loss, kept for one evaluation key only: a state file written
    for another model, calibration set or evaluator is not reused (a fresh search starts)."""

    def __init__(self, path: Optional[Path], key: Optional[str] = None):
        self.path, self.key = path, key
        self.losses: dict = {}
        self.discarded = 0
        if path is not None and path.exists():
            old = json.loads(path.read_text())
            if old.get("key") == key:
                self.losses = old.get("losses", {})
            else:
                self.discarded = len(old.get("losses", {}))
                print(f"search: {path} holds {self.discarded} losses of another model, calibration set or "
                      "evaluator (its key differs); starting a fresh search", file=sys.stderr)

    def save(self, extra: dict) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**extra, "key": self.key, "losses": self.losses}, indent=1))
        tmp.replace(self.path)


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
    except ImportError:  # pragma: no cover
        return None


def greedy_search(
    evaluator,
    targets: Sequence[float] = (0.5, 0.25, 0.125),
    *,
    fixed_full: Iterable[int] = (0,),
    state_file: Optional[Path] = None,
    progress: bool = True,
) -> dict:
    """Returns {"steps": [...], "patterns": {count: pattern}, "baseline": loss, ...}."""
    start = evaluator.all_full
    n = len(start)
    fixed = sorted(set(fixed_full) | {0})
    for f in fixed:
        if start[f] != "F":
            raise ValueError(f"layer {f} must stay Full but the checkpoint has no indexer there")
    counts = targets_to_counts(targets, n, len(fixed))
    state = _State(Path(state_file) if state_file else None, getattr(evaluator, "key", None))
    meta = {"evaluator": getattr(evaluator, "name", "?"), "fixed_full": fixed, "targets": list(targets)}

    def loss(p: str) -> float:
        if p not in state.losses:
            state.losses[p] = evaluator.loss(p)
            state.save(meta)
        return state.losses[p]

    pattern = start
    steps = [{"pattern": pattern, "num_full": pattern.count("F"), "loss": loss(pattern), "flipped": None}]
    while pattern.count("F") > counts[-1]:
        candidates = [i for i, c in enumerate(pattern) if c == "F" and i not in fixed]
        if not candidates:
            break
        bar = _progress(len(candidates), f"{pattern.count('F')} -> {pattern.count('F') - 1} Full") if progress else None
        scored = []
        for i in candidates:
            scored.append((loss(flip(pattern, i)), i))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        best_loss, best = min(scored)  # ties: the lower layer index
        pattern = flip(pattern, best)
        steps.append({
            "pattern": pattern, "num_full": pattern.count("F"), "loss": best_loss, "flipped": best,
            "candidates": {str(i): l for l, i in scored},
        })
        if progress:
            print(f"  {pattern}  {pattern.count('F')}/{n} Full  loss {best_loss:.4f} (flipped layer {best})", file=sys.stderr)
    by_count = {s["num_full"]: s for s in steps}
    result = {
        **meta,
        "num_layers": n,
        "baseline": {"pattern": start, "loss": steps[0]["loss"]},
        "steps": steps,
        "patterns": {str(c): by_count[c]["pattern"] for c in counts if c in by_count},
        "losses": {str(c): by_count[c]["loss"] for c in counts if c in by_count},
        "evaluations": len(state.losses),
    }
    state.save({**meta, "result": result})
    return result


def uniform_pattern(num_layers: int, num_full: int, *, all_full: Optional[str] = None) -> str:
    """Full layers spread evenly from layer 0 (the uniform baseline of the paper)."""
    allowed = [i for i in range(num_layers) if all_full is None or all_full[i] == "F"]
    step = len(allowed) / num_full
    full = {allowed[int(round(k * step))] for k in range(num_full)}
    return "".join("F" if i in full else "S" for i in range(num_layers))


def plot(result: dict, png: Path, extra: Optional[dict] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([s["num_full"] for s in steps], [s["loss"] for s in steps], marker="o", label="greedy search")
    for label, pts in (extra or {}).items():
        xs = sorted(pts, key=int)
        ax.plot([int(x) for x in xs], [pts[x] for x in xs], marker="s", linestyle="--", label=label)
    ax.invert_xaxis()
    ax.set_xlabel("Full layers (indexers kept)")
    ax.set_ylabel("LM loss (calibration)")
    ax.set_title("IndexCache greedy search")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
