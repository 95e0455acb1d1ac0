"""The independent reference: transformers' eager GlmMoeDsa / DeepseekV32 in float64.

float64, not float32: with random weights, a float32 reference itself sometimes lands on
the other side of a near-tie (DeepseekV32 tiny, prompt seed 1: transformers float32
generates 623 as the 3rd token, float64 and SGLang float32 generate 213).

GlmMoeDsa honours `indexer_types` itself. DeepseekV32 has no sharing, so `load()` wraps
its indexers: a Full layer records its top-k, a Shared layer returns the nearest earlier
Full layer's top-k from the same forward.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def load(model_path, pattern: Optional[str] = None):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    kwargs = {}
    arch = config.architectures[0]
    if pattern is not None and arch == "GlmMoeDsaForCausalLM":
        kwargs["indexer_types"] = ["full" if c == "F" else "shared" for c in pattern]
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float64, attn_implementation="eager", experts_implementation="eager", **kwargs
    ).eval()
    if pattern is not None and arch == "DeepseekV32ForCausalLM":
        _share_indexers(model, pattern)
    return model


def _share_indexers(model, pattern: str) -> None:
    layers = model.model.layers
    assert len(pattern) == len(layers) and pattern[0] == "F", pattern
    produced = {}
    source = None
    for i, layer in enumerate(layers):
        indexer = layer.self_attn.indexer
        if pattern[i] == "F":
            original = indexer.forward

            def record(*args, _original=original, _i=i, **kwargs):
                produced[_i] = _original(*args, **kwargs)
                return produced[_i]

            indexer.forward = record
            source = i
        else:

            def reuse(*args, _source=source, **kwargs):
                return produced[_source]

            indexer.forward = reuse


@torch.no_grad()
def greedy(model, prompt: Sequence[int], n: int) -> list:
    """n argmax tokens, EOS included (like SGLang's ignore_eos), one full forward per step."""
    ids = list(prompt)
    for _ in range(n):
        logits = model(torch.tensor([ids])).logits[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt):]


@torch.no_grad()
def prompt_logprobs(model, prompt: Sequence[int]) -> list:
    """log p(prompt[i] | prompt[:i]) for i >= 1."""
    logits = model(torch.tensor([list(prompt)])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [lp[i - 1, prompt[i]].item() for i in range(1, len(prompt))]
