"""What a launch line may combine with IndexCache, checked before any weight loads.

`check_launch` refuses a launch under which some forward would run Shared layers without the
fail-closed check (another backend for a forward mode, two-batch overlap, SGLang's metadata glue
graph), an `SGLANG_INDEXCACHE_*` value the kernels do not take, and a switchable server with
anything that would keep an old pattern alive (CUDA graphs, pipeline stages, speculative
decoding, host copies of the cache). Called from `model_config.apply_to_model_config`.
"""

from __future__ import annotations

from typing import Any

from sglang_indexcache.integration.dsa_sites import BACKEND_NAME, refusal
from sglang_indexcache.schedule import IndexCacheFlags, ScheduleError


def flags_from_server_args(server_args: Any) -> IndexCacheFlags:
    return IndexCacheFlags(
        pattern=getattr(server_args, "index_cache_pattern", None),
        freq=getattr(server_args, "index_cache_freq", None),
        offset=getattr(server_args, "index_cache_offset", None),
        pp_handoff=getattr(server_args, "index_cache_pp_handoff", None) or "recompute",
    )


BACKEND_FLAGS = ("attention_backend", "prefill_attention_backend", "decode_attention_backend")


def wants_index_cache(server_args: Any, flags: IndexCacheFlags) -> bool:
    asked = flags.given or flags.pp_handoff != "recompute"
    return asked or BACKEND_NAME in {getattr(server_args, name, None) for name in BACKEND_FLAGS}


def check_launch(server_args: Any, flags: IndexCacheFlags) -> None:
    """Refuse, before any weight loads, a launch whose schedule some forward would run unchecked.

    The fail-closed check lives in the `indexcache` backend: a forward mode served by another
    backend (`--prefill-attention-backend` / `--decode-attention-backend` hybrids, or the flags
    under `--attention-backend dsa`) would run Shared layers with no check at all.
    """
    given = {name: getattr(server_args, name, None) for name in BACKEND_FLAGS}
    others = {name: value for name, value in given.items() if value not in (None, BACKEND_NAME)}
    if others:
        what = ", ".join(f"--{n.replace('_', '-')} {v}" for n, v in others.items())
        if BACKEND_NAME in given.values():
            raise ScheduleError(
                f"{what} with --attention-backend {BACKEND_NAME}: that forward mode would run Shared layers "
                f"without IndexCache's fail-closed check; drop it or set it to {BACKEND_NAME}"
            )
        raise ScheduleError(
            f"{flags.describe() if flags.given else '--index-cache-pp-handoff ' + flags.pp_handoff} needs "
            f"--attention-backend {BACKEND_NAME} (got {what}). SGLang's own "
            "sharing, without the fail-closed check, is configured with --json-model-override-args "
            '\'{"indexer_types": null, "index_topk_pattern": "..."}\''
        )
    refused = refusal(server_args)
    if refused:
        raise ScheduleError(f"{refused}; drop the flag or use --attention-backend dsa")
    if getattr(server_args, "enable_two_batch_overlap", False):
        # TboAttnBackend wraps one backend per micro-batch; whether each child's forward
        # reaches its own check has not been run on a GPU, so the launch is refused rather
        # than left to the layer hook's refusal at the first forward
        raise ScheduleError(
            f"--enable-two-batch-overlap with --attention-backend {BACKEND_NAME}: the per-micro-batch "
            "backends are not proven to carry IndexCache's fail-closed check; drop the flag"
        )
    if _metadata_glue_graph():
        # SGLang then replays a captured copy of the per-replay metadata prep instead of
        # calling the backend's init_forward_metadata_out_graph, where the backend checks that
        # the graph being replayed was captured through the fail-closed check and counts it
        raise ScheduleError(
            f"SGLANG_ENABLE_METADATA_GLUE_GRAPH with --attention-backend {BACKEND_NAME}: glued CUDA-graph "
            "replays skip the backend's replay check and its counters and metrics; unset it"
        )
    _check_topk_choice(server_args)
    if getattr(server_args, "index_cache_switchable", False):
        _check_switchable(server_args)


def _check_topk_choice(server_args: Any) -> None:
    """SGLANG_INDEXCACHE_TOPK (backend/topk.py) and SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS
    (backend/paged_extend.py): a value they do not take, or a CUDA kernel asked for on CPU,
    is refused here rather than in the scheduler process."""
    from sglang_indexcache.backend.paged_extend import ENV as ROWS_ENV, max_rows, rows_set
    from sglang_indexcache.backend.topk import ENV, choice_set, chosen

    try:
        topk, rows = chosen(), max_rows()
    except ValueError as e:
        raise ScheduleError(str(e)) from None
    if getattr(server_args, "device", None) == "cpu":
        if topk != "upstream" and choice_set():  # set, not the default (CUDA-only, ignored on CPU)
            raise ScheduleError(f"{ENV}={topk} with --device cpu: that top-k is a kernel for CUDA GPUs; unset it")
        if rows and rows_set():  # set, not the default (CUDA-only, ignored on CPU)
            raise ScheduleError(f"{ROWS_ENV}={rows} with --device cpu: the paged logits kernel is "
                                "DeepGEMM's, for CUDA GPUs; unset it")


def _metadata_glue_graph() -> bool:
    """SGLang's experimental metadata glue graph is on (read as SGLang reads it)."""
    from sglang.srt.environ import envs

    return bool(envs.SGLANG_ENABLE_METADATA_GLUE_GRAPH.get())


def _check_switchable(server_args: Any) -> None:
    """--index-cache-switchable serves one forward path whose roles change between requests;
    what would keep an old pattern alive (or was not run that way) is refused."""
    gpu = getattr(server_args, "device", None) != "cpu"
    refused = {
        # without it SGLang's /set_internal_state, the channel a switch travels on, is open to anyone
        "no --admin-api-key (the switch is an admin request)": not getattr(server_args, "admin_api_key", None),
        "a GPU without --disable-cuda-graph (a graph captured under one pattern would replay under another)":
            gpu and not getattr(server_args, "disable_cuda_graph", False),
        **{f"{what} (it outranks --disable-cuda-graph: that phase's graphs would replay an old pattern)": True
           for what in (_graph_phases_kept(server_args) if gpu else [])},
        "--pp-size > 1": (getattr(server_args, "pp_size", 1) or 1) > 1,
        "--speculative-algorithm": bool(getattr(server_args, "speculative_algorithm", None)),
        "--enable-hierarchical-cache (host copies of a prefix would outlive a switch)":
            bool(getattr(server_args, "enable_hierarchical_cache", False)),
    }
    bad = [what for what, hit in refused.items() if hit]
    if bad:
        raise ScheduleError("--index-cache-switchable is not served with " + "; ".join(bad))


def _graph_phases_kept(server_args: Any) -> list:
    """The flags that turn a CUDA graph phase back on past --disable-cuda-graph: SGLang 0.5.23 ranks
    --cuda-graph-backend-{decode,prefill} and --cuda-graph-config above it
    (`arg_groups/cuda_graph_hook.parse_cuda_graph_config`)."""
    import json

    kept = []
    for phase in ("decode", "prefill"):
        backend = getattr(server_args, f"cuda_graph_backend_{phase}", None)
        if backend not in (None, "disabled"):
            kept.append(f"--cuda-graph-backend-{phase} {backend}")
    raw = getattr(server_args, "cuda_graph_config", None)
    if raw is None:
        return kept
    if hasattr(raw, "to_dict"):  # SGLang's CudaGraphConfig
        raw = raw.to_dict()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return kept + ["--cuda-graph-config that is not JSON"]
    if not isinstance(raw, dict):
        return kept + [f"--cuda-graph-config {raw!r}"]
    for phase, settings in raw.items():
        backend = settings.get("backend") if isinstance(settings, dict) else None
        if backend not in (None, "disabled"):
            kept.append(f"--cuda-graph-config {phase} backend {backend}")
    return kept
