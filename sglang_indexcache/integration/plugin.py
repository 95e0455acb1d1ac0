"""The `sglang.srt.plugins` entry point: SGLang calls `register()` early in every process.

It adds the `indexcache` attention backend (CLI choice and factory), makes SGLang read its
name as `dsa` wherever it picks DSA behaviour by name (`integration/dsa_sites.py`; the hooks
the backend needs inside SGLang's model code are installed by `backend/hooks.py` when it is
built), the hook that resolves the IndexCache schedule whenever SGLang builds a ModelConfig, and
the request validation of `integration/requests.py` (out-of-vocabulary prompt token ids
answered with HTTP 400), and `integration/cpu_parallel.py` (no PyNccl on the CPU engine,
without which `--tp-size 2` cannot start there), the pattern-switch route of a
`--index-cache-switchable` server (`integration/switch.py`), and, only where a benchmark
asks for them, the PP benchmark's boundary and stage probe (`integration/pp_probe.py`) and
unit-scale indexer weights for dummy-weight runs (`integration/bench_weights.py`).
"""

from __future__ import annotations

import logging

from sglang_indexcache.integration import bench_weights, cpu_parallel, dsa_sites, pp_probe, requests, switch
from sglang_indexcache.integration.model_config import BACKEND_NAME, apply_to_model_config

logger = logging.getLogger("sglang_indexcache")

_MODEL_CONFIG_TARGET = "sglang.srt.configs.model_config.ModelConfig.from_server_args"


def check_sglang_version() -> None:
    from importlib.metadata import version

    from sglang_indexcache.integration.patches import SGLANG_VERSION

    found = version("sglang")
    if found != SGLANG_VERSION:
        raise RuntimeError(
            f"sglang-indexcache supports SGLang {SGLANG_VERSION} only; SGLang {found} is installed. "
            f"pip install sglang=={SGLANG_VERSION}"
        )


def _after_model_config(model_config, server_args, *args, **kwargs):
    # from_server_args(server_args, model_path, model_revision, is_draft_model, ...)
    is_draft = kwargs.get("is_draft_model", args[2] if len(args) > 2 else False)
    apply_to_model_config(model_config, server_args, is_draft_model=is_draft)
    return model_config


def _create_backend(runner):
    # Imported when SGLang builds the backend: the backend package pulls in SGLang's model and
    # kernel modules, which plugin loading (every process, CPU ones too) must not.
    from sglang_indexcache.backend import create_backend

    return create_backend(runner)


_registered = False


def is_registered() -> bool:
    """True once `register()` finished in this process. Read by patch 0001's guard, which
    refuses the `--index-cache-*` flags (and the backend name) when the plugin is not active."""
    return _registered


def register() -> None:
    """Entry point. SGLang logs and swallows a plugin's exceptions, so the schedule hook
    (without which the --index-cache-* flags would do nothing) is registered before any
    heavier import can fail."""
    check_sglang_version()
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    HookRegistry.register(_MODEL_CONFIG_TARGET, _after_model_config, HookType.AFTER)
    HookRegistry.register(requests.TARGET, requests.before_validate_one_request, HookType.BEFORE)
    HookRegistry.register(cpu_parallel.TARGET, cpu_parallel.around_init_model_parallel_group, HookType.AROUND)
    switch.register(HookRegistry, HookType)
    pp_probe.register(HookRegistry, HookType)  # only with SGLANG_INDEXCACHE_PP_PROBE (bench/pp.py)
    bench_weights.register(HookRegistry, HookType)  # only with SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS
    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES, add_attention_backend_choices
    from sglang.srt.layers.attention.attention_registry import register_attention_backend

    if BACKEND_NAME not in ATTENTION_BACKEND_CHOICES:
        add_attention_backend_choices([BACKEND_NAME])
    register_attention_backend(BACKEND_NAME)(_create_backend)
    dsa_sites.install(_create_backend)
    global _registered
    _registered = True
    logger.debug("sglang_indexcache plugin registered")
