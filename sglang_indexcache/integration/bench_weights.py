"""Indexer weights at a real scale for `--load-format dummy` benchmarks, off unless asked for.

SGLang's dummy loader sets every float parameter uniform in +-1e-3, so every normed activation
has an rms of about 5.8e-4 and the lightning indexer's scores come out near 1e-17
(`benchmarks/results/h200-2026-12-01-session10/dummy_scores.py`). In fp16 they are all 0, and
SGLang's top-k kernels bin scores by their fp16 cast: a whole row lands in one or two bins, so
the top-k of a dummy-weight benchmark neither costs nor selects what it does on a checkpoint.

With `SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit` in a server's environment (`bench/common`
sets it for the benchmarks that time the indexer), every DSA indexer of the model gets, right
after the dummy weights: its projections normal with std 1 / (5.8e-4 * sqrt(fan-in)), so that
q, k and the head weights come out with an rms near 1 from dummy-scale inputs, and its key norm
the identity (weight 1, bias 0). Scores are then of order 1 and spread over many fp16 bins, as
a trained indexer's are. Every backend's server gets the same weights (seeded by module name),
so `dsa` and `indexcache` stay comparable. Nothing else in the model changes.
"""

from __future__ import annotations

import logging
import os
import zlib

ENV = "SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS"
TARGET = "sglang.srt.model_loader.loader.initialize_dummy_weights"
DUMMY_RMS = 1e-3 / 3 ** 0.5  # rms of uniform(-1e-3, 1e-3): SGLang's dummy weights
PROJECTIONS = ("wq_b", "wk", "weights_proj", "wk_weights_proj")

logger = logging.getLogger(__name__)


def rescale_indexers(model, indexer_cls) -> int:
    """Re-initialise every `indexer_cls` module of `model` as the module docstring says; how many."""
    import torch

    count = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, indexer_cls):
            continue
        for proj in PROJECTIONS:
            lin = getattr(mod, proj, None)
            if lin is None:
                continue
            w = lin.weight
            if not w.is_floating_point() or w.element_size() < 2:
                raise RuntimeError(f"{ENV}: {name}.{proj} is {w.dtype}; only unquantized indexers can be rescaled")
            gen = torch.Generator(device=w.device).manual_seed(zlib.crc32(f"{name}.{proj}".encode()))
            std = 1.0 / (DUMMY_RMS * w.shape[1] ** 0.5)
            with torch.no_grad():
                w.copy_(torch.randn(w.shape, generator=gen, device=w.device, dtype=torch.float32).mul_(std))
        norm = mod.k_norm
        with torch.no_grad():
            norm.weight.fill_(1.0)
            if getattr(norm, "bias", None) is not None:
                norm.bias.zero_()
        count += 1
    return count


def after_dummy_weights(result, model, *args, **kwargs):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

    if os.environ.get(ENV) != "unit":
        raise RuntimeError(f"{ENV}={os.environ.get(ENV)!r}: the only value is 'unit'")
    count = rescale_indexers(model, Indexer)
    logger.info("%s: %d indexers given unit-scale weights", ENV, count)
    return result


def register(registry, hook_type) -> None:
    """At plugin load, in every process; only where the variable is set."""
    if os.environ.get(ENV):
        registry.register(TARGET, after_dummy_weights, hook_type.AFTER)
