"""Every place SGLang 0.5.23 reads the literal backend name "dsa", and how `indexcache` meets it.

SGLang picks some DSA behaviour by comparing the attention backend's name with "dsa". Under
`--attention-backend indexcache` each such comparison is false, so each site is either made
to see our backend (a hook), refused at startup with a message naming the flag (the
behaviour behind it cannot be served correctly yet), or is not a comparison of the attention
backend's name at all. `tests/test_dsa_sites.py` scans SGLang's source and fails when a site
appears, changes or goes that this table does not list. The same table is in
`patches/sglang-0.5.23/README.md`.
"""

from __future__ import annotations

HOOKED, REFUSED, NOT_A_BACKEND_NAME, UNREACHABLE = "hooked", "refused at startup", "not a backend-name check", "unreachable"

# (path under the sglang package, the stripped source line): (how, why)
SITES = {
    ("srt/speculative/draft_utils.py", '"dsa": self._create_dsa_decode_backend,'):
        (HOOKED, "the draft's backend map learns indexcache -> the DSA draft backends (backend/hooks.py)"),
    ("srt/speculative/draft_utils.py", '"nsa": self._create_dsa_decode_backend,  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the deprecated alias's entry in the same map"),
    ("srt/speculative/draft_utils.py", '"dsa": self._create_dsa_prefill_backend,'):
        (HOOKED, "as above, for the draft-extend backend"),
    ("srt/speculative/draft_utils.py", '"nsa": self._create_dsa_prefill_backend,  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the deprecated alias's entry in the same map"),
    ("srt/speculative/draft_utils.py", '"dsa",'):
        (NOT_A_BACKEND_NAME, "the name the DSA draft backends stamp themselves with (the draft runs SGLang's own)"),
    ("srt/models/deepseek_common/attention_backend_handler.py", 'AttentionBackendRegistry.register("dsa", handle_attention_dsa)'):
        (HOOKED, "indexcache is registered with the same handler (backend/hooks.py register_model_dispatch)"),
    ("srt/models/deepseek_common/attention_backend_handler.py", ')  # Deprecated alias; use "dsa"'):
        (NOT_A_BACKEND_NAME, "a comment"),
    ("srt/models/deepseek_common/utils.py", '"dsa",'):
        (HOOKED, "FORWARD_ABSORB_CORE_ATTENTION_BACKENDS gets indexcache appended (register_model_dispatch)"),
    ("srt/models/deepseek_common/utils.py", '"nsa",  # Deprecated alias for "dsa"'):
        (NOT_A_BACKEND_NAME, "the deprecated alias in the same list"),
    ("srt/models/deepseek_common/attention_forward_methods/forward_mla.py", 'if self.current_attention_backend in ("dsa", "nsa"):'):
        (REFUSED, "the fused RoPE + FP8 quantise branch of the trtllm DSA kernels: --dsa-*-backend trtllm is refused with indexcache"),
    ("srt/models/deepseek_common/attention_forward_methods/forward_mla_rocm.py", 'and self.current_attention_backend in ("dsa", "nsa")'):
        (UNREACHABLE, "ROCm: the indexcache backend runs on CUDA and CPU only and refuses other devices"),
    ("srt/layers/cp/base.py", 'if value == "dsa":'):
        (REFUSED, "context-parallel prefill's DSA kind: --enable-prefill-cp is refused with indexcache"),
    ("srt/layers/cp/base.py", '"of {\'fa3\', \'fa4\', \'flashinfer\', \'dsa\', \'trtllm_mha\', \'dsv4\'}"'):
        (NOT_A_BACKEND_NAME, "the error message of the same function"),
    ("srt/arg_groups/kv_shard_hook.py", 'if prefill_backend == "dsa":'):
        (REFUSED, "DSA KV sharding needs context-parallel prefill, refused with indexcache"),
    ("srt/layers/attention/attention_registry.py", '@register_attention_backend("dsa")'):
        (NOT_A_BACKEND_NAME, "upstream's own factory; indexcache registers its own (integration/plugin.py)"),
    ("srt/layers/attention/attention_registry.py", '"attention-backend=\'nsa\' is deprecated; use \'dsa\' instead. "'):
        (NOT_A_BACKEND_NAME, "a warning message"),
    ("srt/arg_groups/choices.py", '"dsa",'):
        (NOT_A_BACKEND_NAME, "the CLI choices; indexcache is added by the plugin"),
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
    """The flag behind a REFUSED site, if the launch sets it; else None."""
    if getattr(server_args, "enable_prefill_cp", False):
        return ("--enable-prefill-cp: SGLang selects context-parallel DSA prefill (and its KV sharding) by "
                "comparing the backend name with 'dsa' (layers/cp/base.py, arg_groups/kv_shard_hook.py), "
                "which indexcache does not serve yet")
    for name in ("dsa_prefill_backend", "dsa_decode_backend"):
        if getattr(server_args, name, None) == "trtllm":
            return (f"--{name.replace('_', '-')} trtllm: its fused RoPE + FP8 path is chosen by comparing the "
                    "backend name with 'dsa' (forward_mla.py), which indexcache does not serve yet")
    return None
