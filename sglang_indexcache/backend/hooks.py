"""Hooks the `indexcache` backend installs inside SGLang's model code, when it is built.

Installed from the backend factory, not at plugin load: their targets live in SGLang's
model and kernel modules, which a plugin loaded in every process (CPU ones too) must not
import. Each `register_*` is idempotent and fails loudly if SGLang's hook registry did not
take the hook.

- `register_layer_check`: every DeepSeek/GLM decoder layer goes through the CUDA backend's
  fail-closed source check; a Shared layer under a backend without the check is refused.
- `register_cpu_indexer`: SGLang's torch-less indexer runs ours under the CPU backend.
- `register_pp_receive`: a pipeline stage that starts on a Shared layer under
  `--index-cache-pp-handoff transfer` hands the top-k it received to its backend.
- `register_extend_route`: a Full layer's extend-mode scoring goes through the CUDA backend,
  which sends short extends to the paged kernel (`backend/paged_extend.py`).
- `register_prefill_graphs`: SGLang's breakable prefill CUDA graphs (its default on CUDA)
  report their captures and replays to the CUDA backend, which counts and key-checks them
  as it does decode's (a replay runs no layer hook).
"""

from __future__ import annotations

_INDEXER_NATIVE_TARGET = "sglang.srt.layers.attention.dsa.dsa_indexer.Indexer.forward_native"
_DECODER_LAYER_TARGET = "sglang.srt.models.deepseek_v2.DeepseekV2DecoderLayer.forward"
_MODEL_FORWARD_TARGET = "sglang.srt.models.deepseek_v2.DeepseekV2Model.forward"
_EXTEND_TOPK_TARGET = "sglang.srt.layers.attention.dsa.dsa_indexer.Indexer._get_topk_ragged"
_BCG = "sglang.srt.model_executor.runner_backend.breakable_cuda_graph_backend.BreakableCudaGraphBackend"
# their parameters in SGLang 0.5.23 (the hooks read the shape key and the batch by position)
BCG_PARAMS = {"capture_one": ("self", "shape_key", "forward_fn", "capture_inputs", "post_warmup_hook"),
              "replay": ("self", "shape_key", "static_forward_batch", "kwargs")}
# its parameters in SGLang 0.5.23, checked when the hook is installed
EXTEND_TOPK_PARAMS = ("self", "enable_dual_stream", "forward_batch", "layer_id", "q_fp8", "weights", "metadata",
                      "topk_result")


def _around_indexer_native(original, indexer, x, q_lora, positions, forward_batch, layer_id, *args, **kwargs):
    """SGLang's indexer has no torch path; under our CPU backend it runs ours."""
    from sglang.srt.model_executor.forward_context import get_attn_backend

    backend = get_attn_backend()
    run = getattr(backend, "run_indexer", None)
    if run is None:
        return original(indexer, x, q_lora, positions, forward_batch, layer_id, *args, **kwargs)
    return run(indexer, x, q_lora, positions, forward_batch, layer_id)


def _around_decoder_layer(original, layer, *args, **kwargs):
    """Under the CUDA indexcache backend, every DeepSeek/GLM decoder layer goes through its
    fail-closed source check (`IndexCacheDSABackend.index_cache_layer`)."""
    # forward(positions, hidden_states, forward_batch, ..., prev_topk_indices=..., ...)
    from sglang.srt.model_executor.forward_context import get_attn_backend

    forward_batch = kwargs.get("forward_batch", args[2] if len(args) > 2 else None)
    backend = get_attn_backend()
    check = getattr(backend, "index_cache_layer", None)
    if check is None:
        # Another backend runs this forward (the speculative draft's, whose layers are all
        # Full): a Shared layer there would attend on a top-k nobody checked. Refuse. (SGLang
        # marks the NextN draft layer skip_topk too; it runs its own indexer when handed none.)
        attn = getattr(layer, "self_attn", None)
        if getattr(attn, "skip_topk", False) and not getattr(attn, "is_nextn", False):
            from sglang_indexcache.backend.store import IndexCacheError

            raise IndexCacheError(
                f"layer {getattr(layer, 'layer_id', '?')} is Shared but this forward runs under "
                f"{type(backend).__name__}, which does not check its top-k source; refusing to attend"
            )
        return original(layer, *args, **kwargs)
    return check(original, layer, args, kwargs, forward_batch, kwargs.get("prev_topk_indices"))


def _around_model_forward(original, model, *args, **kwargs):
    """A pipeline stage after the first gets the previous stage's proxy tensors; under our
    backend the top-k among them (SGLang sends one when this stage starts on a Shared layer:
    `--index-cache-pp-handoff transfer`) is handed to the backend as this forward's, before
    any layer runs. Nothing received is handed as None: a Shared layer needing it then fails."""
    # forward(input_ids, positions, forward_batch, input_embeds=None, pp_proxy_tensors=None)
    proxy = kwargs.get("pp_proxy_tensors", args[4] if len(args) > 4 else None)
    if proxy is not None:
        from sglang.srt.model_executor.forward_context import get_attn_backend

        received = getattr(get_attn_backend(), "index_cache_received", None)
        if received is not None:
            forward_batch = kwargs.get("forward_batch", args[2] if len(args) > 2 else None)
            received(forward_batch, proxy.tensors.get("topk_indices"))
    return original(model, *args, **kwargs)


def _around_extend_topk(original, indexer, *args, **kwargs):
    """An extend's Full-layer scoring: the CUDA indexcache backend decides the path."""
    from sglang.srt.model_executor.forward_context import get_attn_backend

    route = getattr(get_attn_backend(), "index_cache_extend_topk", None)
    if route is None:  # another backend (a speculative draft's): SGLang's path
        return original(indexer, *args, **kwargs)
    return route(original, indexer, args, kwargs)


def prefill_graph_key(shape_key) -> tuple:
    """The CUDA backend's key of a breakable prefill graph: its SGLang `ShapeKey` (tokens, and
    any stream, prefix or attention variant), as text."""
    extra = [f"{name}={value}" for name, value in sorted(vars(shape_key).items()) if name != "size" and value is not None]
    return ("PREFILL_GRAPH", " ".join([str(shape_key.size), *extra]))


def _prefill_graph_backend(graph_backend):
    """The indexcache CUDA backend a breakable graph backend replays for, when it serves SGLang's
    prefill runner; None for decode's (counted by `init_forward_metadata_out_graph`) and for
    another attention backend (a speculative draft's)."""
    from sglang.srt.model_executor.runner.prefill_cuda_graph_runner import PrefillCudaGraphRunner

    runner = graph_backend._cuda_graph_runner  # SGLang 0.5.23's attribute: fail loudly if it moved
    if not isinstance(runner, PrefillCudaGraphRunner):
        return None
    backend = runner.model_runner.attn_backend
    return backend if hasattr(backend, "index_cache_prefill_replay") else None


def _around_bcg_capture(original, graph_backend, shape_key, *args, **kwargs):
    """Its warm-ups and capture run through the layer hook: the backend keeps the capture's counts."""
    backend = _prefill_graph_backend(graph_backend)
    if backend is None:
        return original(graph_backend, shape_key, *args, **kwargs)
    backend.index_cache_prefill_capture(prefill_graph_key(shape_key))
    try:
        return original(graph_backend, shape_key, *args, **kwargs)
    finally:
        backend.index_cache_prefill_capture(None)


def _around_bcg_replay(original, graph_backend, shape_key, static_forward_batch, **kwargs):
    """Counted, and refused for a graph whose capture the backend did not see, before it runs."""
    backend = _prefill_graph_backend(graph_backend)
    if backend is not None:
        backend.index_cache_prefill_replay(prefill_graph_key(shape_key), static_forward_batch)
    return original(graph_backend, shape_key, static_forward_batch, **kwargs)


def install_hook(target: str, hook) -> None:
    """Install an AROUND hook now (idempotent); fail loudly if SGLang's registry did not take it."""
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    if target not in HookRegistry._patched:
        HookRegistry.register(target, hook, HookType.AROUND)
        HookRegistry.apply_hooks()
    if target not in HookRegistry._patched:
        raise RuntimeError(f"could not install the indexcache hook on {target}")


def register_layer_check() -> None:
    """Install the decoder-layer hook the CUDA backend checks Shared layers with (idempotent)."""
    install_hook(_DECODER_LAYER_TARGET, _around_decoder_layer)


def register_pp_receive() -> None:
    """Install the model-forward hook that hands a stage the top-k it received (idempotent)."""
    install_hook(_MODEL_FORWARD_TARGET, _around_model_forward)


def register_extend_route() -> None:
    """Install the extend-scoring hook of `SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS` (idempotent);
    refused if SGLang's method does not take the arguments the route reads by position."""
    import inspect

    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

    params = tuple(inspect.signature(Indexer._get_topk_ragged).parameters)
    if params != EXTEND_TOPK_PARAMS:
        raise RuntimeError(f"{_EXTEND_TOPK_TARGET} takes {params}, not {EXTEND_TOPK_PARAMS}: "
                           "the paged extend route does not know this SGLang")
    install_hook(_EXTEND_TOPK_TARGET, _around_extend_topk)


def register_prefill_graphs() -> None:
    """Install the breakable prefill graph hooks (idempotent); refused if SGLang's methods do not
    take the arguments the hooks read by position."""
    import inspect

    from sglang.srt.model_executor.runner_backend.breakable_cuda_graph_backend import BreakableCudaGraphBackend

    for name, want in BCG_PARAMS.items():
        params = tuple(inspect.signature(getattr(BreakableCudaGraphBackend, name)).parameters)
        if params != want:
            raise RuntimeError(f"{_BCG}.{name} takes {params}, not {want}: the indexcache prefill graph "
                               "hooks do not know this SGLang")
    install_hook(f"{_BCG}.capture_one", _around_bcg_capture)
    install_hook(f"{_BCG}.replay", _around_bcg_replay)


def register_cpu_indexer() -> None:
    """Route SGLang's `Indexer.forward_native` to the CPU backend (idempotent).

    Installed when the CPU backend is built, after the model modules are imported, so
    no process imports the DSA indexer module just for loading the plugin.
    """
    install_hook(_INDEXER_NATIVE_TARGET, _around_indexer_native)


def set_layer_roles(model, schedule) -> None:
    """Give the built model's attention layers the roles of `schedule` (a switchable server,
    `--index-cache-switchable`, built every such layer with its indexer). SGLang's DSA forward
    reads `skip_topk` (reuse the previous layer's top-k) and `next_skip_topk` (hand this
    layer's on) at every forward."""
    layers = getattr(getattr(model, "model", model), "layers", None)
    if layers is None:
        raise RuntimeError(f"{type(model).__name__} has no model.layers to give IndexCache roles to")
    n = schedule.num_layers
    dsa = [(layer.layer_id, layer.self_attn) for layer in layers  # not another stage's placeholder
           if getattr(getattr(layer, "self_attn", None), "use_dsa", False) and getattr(layer, "layer_id", None) is not None]
    unbuilt = [i for i, attn in dsa if schedule.layers[i].runs_indexer and attn.indexer is None]
    if unbuilt:  # checked before any layer changes: a refused schedule leaves the old one whole
        raise RuntimeError(f"layer(s) {unbuilt} are Full in the new schedule but were built without an indexer")
    for i, attn in dsa:
        attn.skip_topk = not schedule.layers[i].runs_indexer
        attn.next_skip_topk = i + 1 < n and not schedule.layers[i + 1].runs_indexer
