"""Activations and indexer weights at a real scale for `--load-format dummy` benchmarks,
off unless asked for.

SGLang's dummy loader sets every float parameter uniform in +-1e-3. The residual stream then
starts at an rms of 6e-4, below the norms' epsilon, so no norm brings an activation to unit
scale, every norm's output is scaled by its 6e-4 weight once more, and the lightning indexer's
scores come out near 1e-17 (`benchmarks/results/h200-2026-12-01-session10/dummy_scores.py`;
6.6e-19 measured in a CPU server on glm-tiny). In fp16 they are all 0, and SGLang's top-k
kernels bin scores by their fp16 cast: a whole row lands in one or two bins, so the top-k of a
dummy-weight benchmark neither costs nor selects what it does on a checkpoint.

With `SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit` in a server's environment (a benchmark
passes it, e.g. `bench turn --server-env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit`), right
after the dummy weights: every norm's weight is 1 (bias 0), the input embeddings are standard
normal, so activations are of order 1 as in a trained model; and every DSA indexer's
projections are normal with std 1 / sqrt(fan-in), so its q, k and head weights are of order 1
too. Its scores are then of order 1 and spread over many fp16 bins. Every other weight keeps
its dummy value. The draws are seeded by parameter name, so the servers of a benchmark (`dsa`
and `indexcache` alike) get the same weights.
"""

from __future__ import annotations

import logging
import os
import zlib

ENV = "SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS"
TARGET = "sglang.srt.model_loader.loader.initialize_dummy_weights"
PROJECTIONS = ("wq_b", "wk", "weights_proj", "wk_weights_proj")

logger = logging.getLogger(__name__)


def _normal_(param, name: str, std: float) -> None:
    import torch

    gen = torch.Generator(device=param.device).manual_seed(zlib.crc32(name.encode()))
    with torch.no_grad():
        param.copy_(torch.randn(param.shape, generator=gen, device=param.device, dtype=torch.float32).mul_(std))


def _check_float(param, name: str) -> None:
    if not param.is_floating_point() or param.element_size() < 2:
        raise RuntimeError(f"{ENV}: {name} is {param.dtype}; only unquantized weights can be rescaled")


def rescale(model, indexer_cls, norm_classes: tuple, embedding_classes: tuple, head_classes: tuple = ()) -> dict:
    """Rescale `model` in place as the module docstring says; how many modules of each kind.
    `head_classes`: embedding subclasses that are output heads, left alone."""
    import torch

    counts = {"norms": 0, "embeddings": 0, "indexers": 0}
    for name, mod in model.named_modules():
        if isinstance(mod, norm_classes):
            with torch.no_grad():
                mod.weight.fill_(1.0)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
            counts["norms"] += 1
        elif isinstance(mod, embedding_classes) and not isinstance(mod, head_classes):
            _check_float(mod.weight, f"{name}.weight")
            _normal_(mod.weight, f"{name}.weight", 1.0)
            counts["embeddings"] += 1
        elif isinstance(mod, indexer_cls):
            for proj in PROJECTIONS:
                lin = getattr(mod, proj, None)
                if lin is not None:
                    _check_float(lin.weight, f"{name}.{proj}")
                    _normal_(lin.weight, f"{name}.{proj}", lin.weight.shape[1] ** -0.5)
            counts["indexers"] += 1
    return counts


def after_dummy_weights(result, model, *args, **kwargs):
    if os.environ.get(ENV) != "unit":
        raise RuntimeError(f"{ENV}={os.environ.get(ENV)!r}: the only value is 'unit'")
    import torch
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.layers.layernorm import LayerNorm, RMSNorm
    from sglang.srt.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    counts = rescale(model, Indexer, (LayerNorm, RMSNorm, torch.nn.LayerNorm), (VocabParallelEmbedding,),
                     (ParallelLMHead,))
    logger.info("%s: unit-scale activations and indexers (%s)", ENV, counts)
    return result


def register(registry, hook_type) -> None:
    """At plugin load, in every process; only where the variable is set."""
    if os.environ.get(ENV):
        registry.register(TARGET, after_dummy_weights, hook_type.AFTER)
