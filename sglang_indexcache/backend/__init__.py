"""The `indexcache` attention backend.

On CUDA it runs SGLang's own DSA kernels (`backend.gpu.IndexCacheDSABackend`, SGLang's
`dsa` backend plus the fail-closed check of every Shared layer's source); on CPU it runs
torch ops (`backend.cpu`). Either way Shared layers get no indexer module and no index-K
cache, because the schedule is installed in the model config as `indexer_types` before
the model is built.
"""

from __future__ import annotations

import logging

from sglang_indexcache.integration.model_config import schedule_of
from sglang_indexcache.backend.hooks import (
    register_cpu_indexer,
    register_extend_route,
    register_layer_check,
    register_pp_receive,
    register_prefill_graphs,
)

logger = logging.getLogger("sglang_indexcache")


def create_backend(model_runner):
    """Factory of `--attention-backend indexcache`, which SGLang builds under the name `dsa`
    (`integration/dsa_sites.py`)."""
    schedule = schedule_of(model_runner.model_config)  # fails loudly if the hook did not run
    if getattr(model_runner, "is_draft_worker", False):
        return _create_draft_backend(model_runner, schedule)
    if model_runner.device == "cpu":
        from sglang_indexcache.backend.cpu import IndexCacheCPUBackend

        register_cpu_indexer()
        backend = IndexCacheCPUBackend(model_runner)
        backend.index_cache_schedule = schedule
        if backend.received_sources:
            register_pp_receive()
        return _switchable(model_runner, backend, schedule)
    if model_runner.device != "cuda":
        raise NotImplementedError(
            f"the indexcache backend runs on CUDA and CPU, not on {model_runner.device!r}"
        )
    # Imported here: the DSA backend module loads CUDA kernels.
    from sglang_indexcache.backend.gpu import IndexCacheDSABackend

    register_layer_check()
    register_prefill_graphs()  # before SGLang builds its prefill graph runner, which captures
    backend = IndexCacheDSABackend(model_runner)
    backend.index_cache_schedule = schedule
    if backend.received_sources:
        register_pp_receive()
    if backend.paged_extend_rows:
        register_extend_route()
    logger.info("indexcache backend: %d/%d layers run the indexer (%s)", schedule.num_indexers, schedule.num_layers, schedule.pattern)
    return _switchable(model_runner, backend, schedule)


def _switchable(model_runner, backend, schedule):
    """`--index-cache-switchable`: the model was built with every indexer it has weights for;
    give its layers the roles of the pattern in force, and let the scheduler switch it."""
    if getattr(model_runner.model_config, "index_cache_switchable", None) is None:
        return backend
    from sglang_indexcache.backend.hooks import install_hook
    from sglang_indexcache.integration import switch

    install_hook(switch.SCHEDULER_TARGET, switch.around_set_internal_state)  # in this scheduler process
    backend.install_schedule(schedule)
    logger.info("indexcache backend: switchable, %s in force", schedule.pattern)
    return backend


def _create_draft_backend(model_runner, schedule):
    """The speculative draft (MTP/NextN): every layer Full (`draft_schedule`), nothing is
    shared, so there is no source to check: SGLang's own DSA backend, as `dsa` builds it."""
    if schedule.num_indexers != schedule.num_layers:
        raise RuntimeError(f"the draft model's IndexCache schedule must be all Full, got {schedule.pattern}")
    if model_runner.device != "cuda":
        raise NotImplementedError("speculative decoding with the indexcache backend runs on CUDA only")
    from sglang.srt.layers.attention.dsa_backend import DeepseekSparseAttnBackend

    logger.info("indexcache backend, draft model: SGLang's DSA backend, %d layer(s) Full", schedule.num_layers)
    return DeepseekSparseAttnBackend(model_runner)
