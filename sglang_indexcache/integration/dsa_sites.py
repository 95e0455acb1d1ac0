"""`indexcache` is `dsa` plus a schedule: one mechanism makes SGLang read the name `dsa`.

SGLang 0.5.23 picks some DSA behaviour by comparing the attention backend's name with "dsa"
(the DeepSeek models' forward dispatch, the speculative draft's backend maps, the fused RoPE
branch of the trtllm kernels, context-parallel prefill). Every one of those comparisons reads
the name through one function, `attention_backends_of` (arg_groups/model_override_base.py):
the resolution pipeline calls it on the server args, the runtime context's
`attention_backends()` on the published ones, and the model runner stamps its backend with
what it returned, which is what the models dispatch on. `install()` hooks that one function
to answer `dsa` where the launch said `indexcache`, and makes SGLang's `dsa` factory build
the IndexCache backend for a model whose ModelConfig carries an IndexCache schedule (the
launch asked for `indexcache`; nothing else resolves one). Stock `dsa` launches are untouched.

`SITES` lists every line of SGLang's source naming "dsa" and how `indexcache` meets it; the
launch still refuses two features behind such sites that have not been run with IndexCache
(`refusal`). `tests/test_dsa_sites.py` scans SGLang's source and fails when a site appears,
changes or goes that this table does not list. The same table is in
`patches/sglang-0.5.23/README.md`.
"""

from __future__ import annotations

BACKEND_NAME = "indexcache"

SEES_DSA = "sees dsa"
REFUSED = "sees dsa; the feature is refused at startup"
NOT_A_BACKEND_NAME, UNREACHABLE = "not a backend-name check", "unreachable"

_NAME_TARGET = "sglang.srt.arg_groups.model_override_base.attention_backends_of"
_UPSTREAM = "dsa"

# (path under the sglang package, the stripped source line): (how, why)
SITES = {
    ("srt/speculative/draft_utils.py", '"dsa": self._create_dsa_decode_backend,'):
        (SEES_DSA, "the draft's backend map is keyed by `attention_backends()`: the DSA draft backends"),
    ("srt/speculative/draft_utils.py", '"nsa": self._create_dsa_decode_backend,  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the deprecated alias's entry in the same map"),
    ("srt/speculative/draft_utils.py", '"dsa": self._create_dsa_prefill_backend,'):
        (SEES_DSA, "as above, for the draft-extend backend"),
    ("srt/speculative/draft_utils.py", '"nsa": self._create_dsa_prefill_backend,  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the deprecated alias's entry in the same map"),
    ("srt/speculative/draft_utils.py", '"dsa",'):
        (NOT_A_BACKEND_NAME, "the name the DSA draft backends stamp themselves with (the draft runs SGLang's own)"),
    ("srt/models/deepseek_common/attention_backend_handler.py", 'AttentionBackendRegistry.register("dsa", handle_attention_dsa)'):
        (SEES_DSA, "the models dispatch on the runner's stamp: the DSA forward method"),
    ("srt/models/deepseek_common/attention_backend_handler.py", ')  # Deprecated alias; use "dsa"'):
        (NOT_A_BACKEND_NAME, "a comment"),
    ("srt/models/deepseek_common/utils.py", '"dsa",'):
        (SEES_DSA, "FORWARD_ABSORB_CORE_ATTENTION_BACKENDS is matched against the same stamp"),
    ("srt/models/deepseek_common/utils.py", '"nsa",  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the deprecated alias in the same list"),
    ("srt/models/deepseek_common/attention_forward_methods/forward_mla.py", 'if self.current_attention_backend in ("dsa", "nsa"):'):
        (REFUSED, "the fused RoPE + FP8 branch of the trtllm DSA kernels (Blackwell only), not run with IndexCache: --dsa-*-backend trtllm is refused"),
    ("srt/models/deepseek_common/attention_forward_methods/forward_mla_rocm.py", 'and self.current_attention_backend in ("dsa", "nsa")'):
        (UNREACHABLE, "ROCm: the indexcache backend runs on CUDA and CPU only and refuses other devices"),
    ("srt/layers/cp/base.py", 'if value == "dsa":'):
        (REFUSED, "context-parallel prefill's DSA kind, not run with IndexCache: --enable-prefill-cp is refused"),
    ("srt/layers/cp/base.py", '"of {\'fa3\', \'fa4\', \'flashinfer\', \'dsa\', \'trtllm_mha\', \'dsv4\'}"'):
        (NOT_A_BACKEND_NAME, "the error message of the same function"),
    ("srt/arg_groups/kv_shard_hook.py", 'if prefill_backend == "dsa":'):
        (REFUSED, "DSA KV sharding, part of context-parallel prefill: refused as above"),
    ("srt/layers/attention/attention_registry.py", '@register_attention_backend("dsa")'):
        (SEES_DSA, "the factory SGLang builds for the name `dsa`: `install()` makes it build IndexCache's backend when the model has an IndexCache schedule"),
    ("srt/layers/attention/attention_registry.py", '"attention-backend=\'nsa\' is deprecated; use \'dsa\' instead. "'):
        (NOT_A_BACKEND_NAME, "a warning message"),
    ("srt/arg_groups/choices.py", '"dsa",'):
        (NOT_A_BACKEND_NAME, "the CLI choices; indexcache is added by the plugin (the raw flag keeps the name)"),
    ("srt/arg_groups/choices.py", '"nsa",  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the CLI choices"),
    ("srt/arg_groups/model_overrides/deepseek_v2.py", 'overrides["attention_backend"] = "dsa"'):
        (NOT_A_BACKEND_NAME, "the default when no --attention-backend is given; a user of indexcache gives one"),
    ("srt/arg_groups/model_hook.py", '# The "dsa" attention fill moved to the override registry'):
        (NOT_A_BACKEND_NAME, "a comment"),
    ("srt/models/sarvam_moe.py", '["fa3", "flashinfer", "dsa", "nsa", "trtllm_mla"]'):
        (UNREACHABLE, "another model family (Sarvam MoE); indexcache serves DeepSeek/GLM DSA models"),
    ("srt/models/sarvam_moe.py", '# "nsa" is a deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "a comment"),
    ("srt/platforms/interface.py", 'KVPoolKind = Literal["mha", "mla", "dsa"]'):
        (NOT_A_BACKEND_NAME, "the KV pool kind, chosen from the model (DSA pools serve indexcache too)"),
    ("srt/platforms/interface.py", '"dsa": "get_dsa_kv_pool_cls",'):
        (NOT_A_BACKEND_NAME, "the KV pool kind"),
    ("srt/mem_cache/kv_cache_configurator.py", '"dsa": DSATokenToKVPool,'):
        (NOT_A_BACKEND_NAME, "the KV pool kind"),
    ("srt/mem_cache/kv_cache_configurator.py", 'kind="dsa", default=DSATokenToKVPool'):
        (NOT_A_BACKEND_NAME, "the KV pool kind"),
    ("srt/disaggregation/base/conn.py", 'DSA = "dsa"'):
        (NOT_A_BACKEND_NAME, "a KV transfer kind of PD disaggregation, from the pool"),
    ("srt/disaggregation/mori/conn.py", '"dsa",'):
        (NOT_A_BACKEND_NAME, "the same transfer kind"),
}


def refusal(server_args) -> str | None:
    """The flag behind a REFUSED site (or the draft-backend name), if the launch sets it; else None."""
    if getattr(server_args, "enable_prefill_cp", False):
        return ("--enable-prefill-cp: context-parallel DSA prefill (layers/cp/, arg_groups/kv_shard_hook.py) "
                "splits each prompt across ranks and has not been run with IndexCache's shared top-k")
    for name in ("dsa_prefill_backend", "dsa_decode_backend"):
        if getattr(server_args, name, None) == "trtllm":
            return (f"--{name.replace('_', '-')} trtllm: the trtllm DSA kernels (Blackwell) and their fused "
                    "RoPE + FP8 path (forward_mla.py) have not been run with IndexCache")
    if getattr(server_args, "speculative_draft_attention_backend", None) == BACKEND_NAME:
        return (f"--speculative-draft-attention-backend {BACKEND_NAME}: the draft model runs its own indexer on "
                "every layer (nothing to share); leave the flag out, the draft then runs SGLang's DSA backends")
    return None


def _answer_dsa(result, *args, **kwargs):
    """AFTER hook on `attention_backends_of`: the (prefill, decode) pair with `indexcache` read as `dsa`."""
    return tuple(_UPSTREAM if name == BACKEND_NAME else name for name in result)


def install(create_backend) -> None:
    """Register the name hook (SGLang applies it with the other plugin hooks, every module
    that imported the function included) and wrap SGLang's `dsa` factory so that it calls
    `create_backend(runner)` for a model with an IndexCache schedule (idempotent)."""
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    if _NAME_TARGET not in HookRegistry._patched and not any(
        hook is _answer_dsa for _, hook, _ in HookRegistry._hooks.get(_NAME_TARGET, [])
    ):
        HookRegistry.register(_NAME_TARGET, _answer_dsa, HookType.AFTER)
    upstream = ATTENTION_BACKENDS[_UPSTREAM]
    if getattr(upstream, "index_cache_upstream", None) is not None:
        return

    def dsa_or_indexcache(runner):
        if getattr(runner.model_config, "index_cache_schedule", None) is None:
            return dsa_or_indexcache.index_cache_upstream(runner)
        return create_backend(runner)

    dsa_or_indexcache.index_cache_upstream = upstream
    ATTENTION_BACKENDS[_UPSTREAM] = dsa_or_indexcache
