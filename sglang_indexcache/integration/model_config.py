"""Resolve the IndexCache schedule for a model and hand it to SGLang as `indexer_types`.

SGLang reads every layer's sharing role through `dsa_layer_skips_topk(config, layer)`,
which gives `indexer_types` the highest precedence. Writing the resolved schedule there
(promotions included) makes the model code, the KV pool sizing, the pipeline handoff
and our backend all read one schedule: there is no second source of truth.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from typing import Any, Mapping, Optional

from sglang_indexcache.checkpoint import (
    buildable_indexer_layers,
    declared_sharing_config,
    indexer_weight_layers,
    indexer_weight_layers_between,
    read_raw_config,
)
from sglang_indexcache.integration.dsa_sites import BACKEND_NAME
from sglang_indexcache.integration.launch import check_launch, flags_from_server_args, wants_index_cache
from sglang_indexcache.kv_memory import kv_memory, kv_memory_line
from sglang_indexcache.schedule import IndexCacheFlags, Schedule, ScheduleError, build_schedule, draft_schedule
from sglang_indexcache.sharing import CONFIG_SOURCE_KEYS, sglang_skips_topk

logger = logging.getLogger("sglang_indexcache")


def stage_starts(num_layers: int, pp_size: int) -> list:
    """First layer of every pipeline stage, by SGLang's own partition (SGLANG_PP_LAYER_PARTITION too)."""
    from sglang.srt.distributed.utils import get_pp_indices

    return [get_pp_indices(num_layers, rank, pp_size)[0] for rank in range(pp_size)]


PARTITION_ENV = "SGLANG_PP_LAYER_PARTITION"
# what the align handoff installed, so a scheduler process (which inherits the launcher's
# environment) does not take our partition for the user's
OURS_ENV = "SGLANG_INDEXCACHE_PP_PARTITION"


def resolve_pp_handoff(num_layers: int, config: Mapping[str, Any], flags: IndexCacheFlags, pp_size: int) -> tuple:
    """`--index-cache-pp-handoff align|auto`: choose the handoff and install its partition in
    SGLang's SGLANG_PP_LAYER_PARTITION (read by `get_pp_indices` when the model is built, and by
    `stage_starts`). Returns (flags with the handoff in force, a line for the log or None)."""
    import dataclasses
    import os

    from sglang_indexcache.pipeline import choose_handoff, even_partition, starts_of
    from sglang_indexcache.schedule import Role

    if pp_size <= 1 or flags.pp_handoff not in ("align", "auto"):
        return flags, None
    env = os.environ.get(PARTITION_ENV)
    users = env is not None and env != os.environ.get(OURS_ENV)
    configured = build_schedule(num_layers, config, flags=flags)  # the roles as configured, no stages
    full = [r.role is Role.FULL for r in configured.layers]
    # the split in force without us: the user's, else SGLang's even one (a scheduler process
    # inherits our partition from the launcher and must choose as the launcher did)
    starts = stage_starts(num_layers, pp_size) if users else starts_of(even_partition(num_layers, pp_size))
    try:
        chosen = choose_handoff(full, pp_size, flags.pp_handoff, stage_starts=starts, user_partition=users)
    except ValueError as e:
        raise ScheduleError(str(e)) from None
    if chosen["partition"] is not None:
        value = ",".join(map(str, chosen["partition"]["partition"]))
        os.environ[PARTITION_ENV] = os.environ[OURS_ENV] = value
    return dataclasses.replace(flags, pp_handoff=chosen["handoff"]), f"pipeline handoff asked: {chosen['why']}"


def _loaded_sharing(hf_text_config: Any) -> dict:
    return {k: getattr(hf_text_config, k, None) for k in CONFIG_SOURCE_KEYS if getattr(hf_text_config, k, None) is not None}


def schedule_for_model(
    *,
    model_path: str,
    num_layers: int,
    loaded: Mapping[str, Any],
    overrides: Mapping[str, Any],
    flags: IndexCacheFlags,
    pp_size: int = 1,
    dummy_weights: bool = False,
) -> Schedule:
    """The schedule a server started with these arguments runs (also used by `plan`).

    `loaded` holds the sharing keys of the config as SGLang loaded it (transformers may
    have filled in `indexer_types` from the other keys before overrides were applied);
    the declared values from config.json plus `overrides` are used where readable.
    """
    notes = []
    raw = read_raw_config(model_path)
    if raw is None:
        config = dict(loaded)
        notes.append("config.json is not a local file: using the config as loaded by transformers")
    else:
        config = declared_sharing_config(raw, dict(overrides))
        filled = loaded.get("indexer_types")
        if filled is not None and "indexer_types" not in config:
            declared = [sglang_skips_topk(config, i) for i in range(num_layers)]
            if [t == "shared" for t in filled[:num_layers]] != declared:
                notes.append(
                    "transformers filled in indexer_types when loading config.json, before "
                    "--json-model-override-args applied; SGLang's own 'dsa' backend would follow "
                    "that stale list. IndexCache uses the declared values instead."
                )
    weights = None if dummy_weights else indexer_weight_layers(model_path, num_layers)
    flags, pipeline_line = resolve_pp_handoff(num_layers, config, flags, pp_size)
    schedule = build_schedule(
        num_layers,
        config,
        flags=flags,
        stage_starts=stage_starts(num_layers, pp_size),
        indexer_weight_layers=weights,
        notes=notes,
    )
    if pipeline_line is None:
        return schedule
    import dataclasses

    return dataclasses.replace(schedule, handoff_note=pipeline_line)


def apply_to_model_config(model_config: Any, server_args: Any, *, is_draft_model: bool = False) -> Optional[Schedule]:
    """Resolve, validate and install the schedule on a freshly built SGLang ModelConfig.

    Does nothing (returns None) when neither the `indexcache` backend nor an
    `--index-cache-*` flag was asked for, so stock SGLang is untouched. A speculative draft
    model gets its own all-Full schedule (`_apply_to_draft`).
    """
    from sglang.srt.configs.model_config import is_deepseek_dsa

    flags = flags_from_server_args(server_args)
    if not wants_index_cache(server_args, flags):
        return None
    if is_draft_model:
        return _apply_to_draft(model_config)
    check_launch(server_args, flags)
    cfg = model_config.hf_text_config
    _check_draft_weights(server_args, cfg, model_config.model_path)
    if not is_deepseek_dsa(cfg):
        arch = (getattr(model_config.hf_config, "architectures", None) or ["?"])[0]
        raise ScheduleError(
            f"IndexCache (--attention-backend {BACKEND_NAME} / --index-cache-*) needs a DeepSeek Sparse "
            f"Attention model with index_topk in its config; {arch} at {model_config.model_path} is not one"
        )
    schedule = schedule_for_model(
        model_path=model_config.model_path,
        num_layers=cfg.num_hidden_layers,
        loaded=_loaded_sharing(cfg),
        overrides=json.loads(getattr(server_args, "json_model_override_args", None) or "{}"),
        flags=flags,
        pp_size=getattr(server_args, "pp_size", 1) or 1,
        dummy_weights=getattr(server_args, "load_format", None) == "dummy",
    )
    types = schedule.indexer_types()
    if getattr(server_args, "index_cache_switchable", False):
        # every layer with indexer weights is built with its indexer and index-K; the backend
        # sets the roles of the pattern in force (`backend.create_backend`)
        built = buildable_indexer_layers(model_config.model_path, cfg.num_hidden_layers,
                                         dummy_weights=getattr(server_args, "load_format", None) == "dummy")
        types = ["full" if i in built else "shared" for i in range(cfg.num_hidden_layers)]
        model_config.index_cache_switchable = built
    for config in {id(c): c for c in (cfg, model_config.hf_config)}.values():
        config.indexer_types = types
    model_config.index_cache_schedule = schedule
    kv_dtype = "fp8_e4m3" if "fp8" in str(getattr(server_args, "kv_cache_dtype", "") or "") else "bf16"
    mem = memory_of(cfg, schedule, kv_dtype)
    _log_once(schedule, None if mem is None else kv_memory_line(mem, schedule.num_layers, kv_dtype))
    if getattr(server_args, "speculative_algorithm", None):
        # the draft's ModelConfig is built in the scheduler processes only: its table is logged here
        _log_once(draft_schedule(_draft_layers(cfg)), section="draft")
    return schedule


def _check_draft_weights(server_args: Any, text_config: Any, model_path: str) -> None:
    """A speculative draft over the checkpoint's NextN layers runs its own indexer on each of
    them (all Full): refuse, before weights load, a checkpoint whose NextN layers have no
    indexer weights (dummy weights and checkpoints of unknown layout pass)."""
    algo = getattr(server_args, "speculative_algorithm", None)
    if not algo or getattr(server_args, "load_format", None) == "dummy":
        return
    draft_path = getattr(server_args, "speculative_draft_model_path", None) or model_path
    n = int(text_config.num_hidden_layers)
    wanted = range(n, n + _draft_layers(text_config))
    found = indexer_weight_layers_between(str(draft_path), wanted.start, wanted.stop)
    if found is not None and set(wanted) - found:
        missing = sorted(set(wanted) - found)
        raise ScheduleError(
            f"--speculative-algorithm {algo}: the draft model's NextN layer(s) {missing} in {draft_path} have no "
            "self_attn.indexer weights, and the draft runs its own indexer on every layer (it never reuses the "
            "target's top-k). Use a checkpoint with its MTP layers, or drop the speculative flags"
        )


def _draft_layers(text_config: Any) -> int:
    """Layers of the speculative draft model: the checkpoint's NextN layers (SGLang builds one
    when the config says none)."""
    return int(getattr(text_config, "num_nextn_predict_layers", None) or 1)


def _apply_to_draft(model_config: Any) -> Schedule:
    """The speculative draft (MTP/NextN) runs its own indexer on every layer: all Full.

    `indexer_types` is written for every layer id the draft config could name (its NextN
    layer is built as layer 0 of a config that keeps the target's `num_hidden_layers`), so
    SGLang's model code and KV pool give the draft its indexer and index-K cache whatever
    the checkpoint's sharing keys say.
    """
    cfg = model_config.hf_text_config
    n_draft = _draft_layers(cfg)
    schedule = draft_schedule(n_draft)
    types = ["full"] * max(int(getattr(cfg, "num_hidden_layers", n_draft)), n_draft)
    for config in {id(c): c for c in (cfg, model_config.hf_config)}.values():
        config.indexer_types = types
    model_config.index_cache_schedule = schedule
    _log_once(schedule, section="draft")
    return schedule


def memory_of(text_config: Any, schedule: Schedule, kv_dtype: str = "bf16") -> Optional[dict]:
    """`kv_memory.kv_memory` from a model's text config (None if it lacks MLA/DSA dims)."""
    try:
        return kv_memory(
            schedule,
            kv_lora_rank=int(text_config.kv_lora_rank),
            rope_dim=int(text_config.qk_rope_head_dim),
            index_head_dim=int(text_config.index_head_dim),
            kv_dtype=kv_dtype,
        )
    except (AttributeError, TypeError):
        return None


_logged: set = set()


def _log_once(schedule: Schedule, memory_line: Optional[str] = None, section: str = "target") -> None:
    # ModelConfig is built in the launcher and again in every scheduler process; each
    # section's table (target, draft) goes to the log once, from the launcher.
    if multiprocessing.current_process().name != "MainProcess" or section in _logged:
        logger.debug("IndexCache %s schedule: %s", section, schedule.pattern)
        return
    _logged.add(section)
    if section != "target":
        logger.info("IndexCache, %s model:", section)
    for line in schedule.table().splitlines():
        logger.info(line)
    if memory_line:
        logger.info(memory_line)
    for note in schedule.notes:
        logger.warning("IndexCache: %s", note)


def schedule_of(model_config: Any) -> Schedule:
    """The schedule installed on a ModelConfig; fails loudly if the plugin did not run."""
    schedule = getattr(model_config, "index_cache_schedule", None)
    if schedule is None:
        raise RuntimeError(
            "the IndexCache schedule was not resolved for this model: the sglang_indexcache plugin "
            "did not run (is SGLANG_PLUGINS excluding 'indexcache'?)"
        )
    return schedule


def text_config(model_path: str, overrides: Optional[Mapping[str, Any]] = None):
    """The checkpoint's text config as SGLang loads it (its config loader, overrides applied)."""
    from sglang.srt.utils.hf_transformers_utils import get_config, get_hf_text_config

    return get_hf_text_config(get_config(model_path, trust_remote_code=True, model_override_args=dict(overrides or {})))
