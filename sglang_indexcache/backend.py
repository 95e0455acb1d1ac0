"""The `indexcache` attention backend.

On CUDA it runs SGLang's own DSA kernels (SGLang's `dsa` backend plus the IndexCache
schedule). Shared layers get no indexer module and no index-K cache because the schedule
is installed in the model config as `indexer_types` before the model is built. The CPU
path and the per-forward fail-closed top-k store come in later work.
"""

from __future__ import annotations

import logging

from sglang.srt.layers.attention.dsa_backend import DeepseekSparseAttnBackend

from sglang_indexcache.integration.model_config import schedule_of
from sglang_indexcache.integration.plugin import register_model_dispatch

logger = logging.getLogger("sglang_indexcache")


class IndexCacheBackend(DeepseekSparseAttnBackend):
    """SGLang's DSA backend running the IndexCache schedule."""

    def __init__(self, model_runner, *args, **kwargs):
        self.index_cache_schedule = schedule_of(model_runner.model_config)
        super().__init__(model_runner, *args, **kwargs)


def create_backend(model_runner) -> IndexCacheBackend:
    """Factory registered as `--attention-backend indexcache`."""
    if model_runner.device != "cuda":
        raise NotImplementedError(
            f"the indexcache backend has no {model_runner.device!r} path yet (CUDA only)"
        )
    register_model_dispatch()
    backend = IndexCacheBackend(model_runner)
    s = backend.index_cache_schedule
    logger.info("indexcache backend: %d/%d layers run the indexer (%s)", s.num_indexers, s.num_layers, s.pattern)
    return backend
