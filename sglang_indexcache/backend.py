"""The `indexcache` attention backend.

On CUDA it runs SGLang's own DSA kernels (SGLang's `dsa` backend plus the IndexCache
schedule). Shared layers get no indexer module and no index-K cache because the schedule
is installed in the model config as `indexer_types` before the model is built. The CPU
path and the per-forward fail-closed top-k store come in later work.
"""

from __future__ import annotations

import logging

from sglang_indexcache.integration.model_config import schedule_of
from sglang_indexcache.integration.plugin import register_cpu_indexer, register_model_dispatch

logger = logging.getLogger("sglang_indexcache")


def create_backend(model_runner):
    """Factory registered as `--attention-backend indexcache`."""
    schedule = schedule_of(model_runner.model_config)  # fails loudly if the hook did not run
    if model_runner.device == "cpu":
        from sglang_indexcache.cpu_backend import IndexCacheCPUBackend

        register_model_dispatch()
        register_cpu_indexer()
        backend = IndexCacheCPUBackend(model_runner)
        backend.index_cache_schedule = schedule
        return backend
    if model_runner.device != "cuda":
        raise NotImplementedError(
            f"the indexcache backend runs on CUDA and CPU, not on {model_runner.device!r}"
        )
    # Imported here: the DSA backend module loads CUDA kernels.
    from sglang.srt.layers.attention.dsa_backend import DeepseekSparseAttnBackend

    register_model_dispatch()
    backend = DeepseekSparseAttnBackend(model_runner)
    backend.index_cache_schedule = schedule
    logger.info("indexcache backend: %d/%d layers run the indexer (%s)", schedule.num_indexers, schedule.num_layers, schedule.pattern)
    return backend
