"""transformers' eager GlmMoeDsa / DeepseekV32 with a switchable IndexCache pattern.

`load()` loads a checkpoint and wraps every indexer it has in a `PatternedIndexers`
controller: on each forward a Full layer runs its own indexer and records its top-k, a
Shared layer returns the top-k of the nearest earlier Full layer of the same forward.
The pattern can change between forwards without reloading (the search evaluates many).
Layers whose checkpoint has no indexer (GLM-5.2-style Shared layers) are always Shared;
transformers then carries the previous layer's top-k to them itself.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from sglang_indexcache.schedule import pattern_sources
from sglang_indexcache.tools.search import evaluation_key


class PatternedIndexers:
    def __init__(self, model):
        self.layers = model.model.layers
        self.num_layers = len(self.layers)
        self.has_indexer = [getattr(l.self_attn, "indexer", None) is not None for l in self.layers]
        if not self.has_indexer[0]:
            raise ValueError("layer 0 has no indexer: no IndexCache pattern can run on this checkpoint")
        self.pattern = "".join("F" if h else "S" for h in self.has_indexer)
        self.produced: Dict[int, torch.Tensor] = {}
        self.record_all = False  # overlap analysis: every layer with an indexer runs it
        self.own: Dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            if self.has_indexer[i]:
                indexer = layer.self_attn.indexer
                indexer.forward = self._wrap(i, indexer.forward)

    @property
    def all_full(self) -> str:
        return "".join("F" if h else "S" for h in self.has_indexer)

    @property
    def pattern(self) -> str:
        return self._pattern

    @pattern.setter
    def pattern(self, pattern: str) -> None:
        if len(pattern) != self.num_layers or set(pattern) - {"F", "S"}:
            raise ValueError(f"pattern {pattern!r}: need {self.num_layers} characters of F/S")
        if pattern[0] != "F":
            raise ValueError("layer 0 must be Full")
        missing = [i for i, c in enumerate(pattern) if c == "F" and not self.has_indexer[i]]
        if missing:
            raise ValueError(f"layers {missing} are Full in {pattern!r} but the checkpoint has no indexer there")
        self._pattern = pattern
        self._sources = pattern_sources(pattern)

    def source(self, layer: int) -> int:
        return self._sources[layer]

    def _wrap(self, i: int, original):
        def forward(*args, **kwargs):
            if i == 0:
                self.produced.clear()
            if self._pattern[i] == "F" or self.record_all:
                topk = original(*args, **kwargs)
                if self.record_all:
                    self.own[i] = topk
                if self._pattern[i] == "F":
                    self.produced[i] = topk
                    return topk
            return self.produced[self.source(i)]

        return forward


def load(model_path, *, dtype=torch.float32, indexer_types: Optional[Sequence[str]] = None, device: str = "cpu"):
    """(model, PatternedIndexers). GLM checkpoints load with `indexer_types` as given
    (default: the checkpoint's own), so layers without indexer weights get no indexer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    kwargs = {}
    if indexer_types is not None and config.architectures[0] == "GlmMoeDsaForCausalLM":
        kwargs["indexer_types"] = list(indexer_types)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=dtype, attn_implementation="eager", experts_implementation="eager", **kwargs
    ).eval().to(device)
    return model, PatternedIndexers(model)


def load_with_pattern(model_path, pattern: str, *, dtype=torch.float32):
    """The model running `pattern` (GLM: loaded with it as `indexer_types`)."""
    from transformers import AutoConfig

    arch = AutoConfig.from_pretrained(model_path).architectures[0]
    types = ["full" if c == "F" else "shared" for c in pattern] if arch == "GlmMoeDsaForCausalLM" else None
    model, ctl = load(model_path, dtype=dtype, indexer_types=types)
    ctl.pattern = pattern
    return model, ctl


@torch.no_grad()
def lm_loss(model, sequences: Sequence[Sequence[int]]) -> float:
    """Mean next-token negative log-likelihood over all predicted positions."""
    total, count = 0.0, 0
    for seq in sequences:
        ids = torch.tensor([list(seq)], device=model.device)
        logits = model(ids).logits[0, :-1].double()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
        total += float(nll)
        count += ids.shape[1] - 1
    return total / count


@torch.no_grad()
def own_topk(model, ctl: PatternedIndexers, seq: Sequence[int]) -> Dict[int, torch.Tensor]:
    """Every indexer layer's own top-k ([S, k]) for one sequence (all indexers run)."""
    ctl.record_all, ctl.own = True, {}
    try:
        model(torch.tensor([list(seq)], device=model.device))
        return {i: (t[0] if t.dim() == 3 else t).cpu() for i, t in ctl.own.items()}
    finally:
        ctl.record_all = False


class HFEvaluator:
    """LM loss of a pattern on fixed calibration sequences, with transformers (offline)."""

    name = "transformers"

    def __init__(self, model_path, sequences: Sequence[Sequence[int]], *, dtype=torch.float32, device: str = "cpu"):
        self.model, self.ctl = load(model_path, dtype=dtype, device=device)
        self.sequences = [list(s) for s in sequences]
        # Losses on another device differ in the last bits: a state file keeps one device's.
        extra = [str(dtype)] if device == "cpu" else [str(dtype), device]
        self.key = evaluation_key(self.name, model_path, self.sequences, extra)
        self.num_layers = self.ctl.num_layers
        self.all_full = self.ctl.all_full

    def loss(self, pattern: str) -> float:
        self.ctl.pattern = pattern
        return lm_loss(self.model, self.sequences)

    def close(self) -> None:
        pass


def tokenize_texts(model_path, texts: Sequence[str], *, seq_len: int, max_sequences: Optional[int] = None) -> List[List[int]]:
    """Concatenate texts with the checkpoint's tokenizer and cut them into seq_len pieces."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    ids: List[int] = []
    for t in texts:
        ids.extend(tok(t)["input_ids"])
        ids.append(tok.eos_token_id if tok.eos_token_id is not None else 0)
    out = [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    return out[:max_sequences] if max_sequences else out
