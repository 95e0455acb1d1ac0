"""The schedule installed into SGLang's real ModelConfig: one source of truth."""

import json
import os

import pytest

from sglang.srt.configs.model_config import ModelConfig, dsa_layer_skips_topk
from sglang.srt.server_args import ServerArgs

from sglang_indexcache.integration.model_config import apply_to_model_config, stage_starts
from sglang_indexcache.schedule import Role, ScheduleError


def model_config(path, **kwargs):
    sa = ServerArgs(model_path=path, device="cpu", **kwargs)
    return ModelConfig.from_server_args(sa)


def sglang_pattern(mc):
    n = mc.hf_text_config.num_hidden_layers
    return "".join("S" if dsa_layer_skips_topk(mc.hf_config, i) else "F" for i in range(n))


def test_checkpoint_schedule_without_flags(models):
    mc = model_config(models["glm-tiny"], attention_backend="indexcache")
    s = mc.index_cache_schedule
    assert s.pattern == "FFFSSSFS"  # GLM-5.2's rule on 8 layers
    assert s.source == "config index_topk_freq=4, index_skip_topk_offset=3"
    assert s.indexer_weights_checked
    assert sglang_pattern(mc) == s.pattern


def test_flag_pattern_reaches_the_model_code(models):
    mc = model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="FSSFSS")
    assert sglang_pattern(mc) == "FSSFSS"
    assert mc.hf_config.indexer_types == ["full", "shared", "shared", "full", "shared", "shared"]


def test_freq_flags_reach_the_model_code(models):
    mc = model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_freq=3, index_cache_offset=1)
    assert sglang_pattern(mc) == "FSSFSS"


def test_leading_shared_is_promoted_in_the_model_config(models):
    mc = model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="SSFSSF")
    assert mc.index_cache_schedule.layers[0].role is Role.PROMOTED
    assert sglang_pattern(mc) == "FSFSSF"  # upstream would have run layer 0 as Shared


def test_stage_start_without_weights_is_refused(models):
    # glm-tiny (no indexer weights on Shared layers) split in two stages starts stage 1 on
    # layer 4, a Shared layer: no source on that stage and nothing to promote with.
    with pytest.raises(ScheduleError, match=r"layer 4 \(PROMOTED: configured Shared, first layer of pipeline stage 1"):
        model_config(models["glm-tiny"], attention_backend="indexcache", pp_size=2)


def test_transfer_handoff_keeps_the_stage_start_shared(models):
    """glm-tiny at PP 2 starts stage 1 on layer 4, Shared and without indexer weights: with
    transfer it stays Shared (its source on stage 0) and SGLang's config says so,
    which is what makes SGLang send the top-k across the boundary."""
    mc = model_config(models["glm-tiny"], attention_backend="indexcache", index_cache_pp_handoff="transfer", pp_size=2)
    s = mc.index_cache_schedule
    layer = s.layers[4]
    assert layer.role is Role.SHARED and s.layers[layer.source].stage == 0 and layer.stage == 1
    assert s.received_sources(4, 8) == (layer.source,) and s.received_sources(0, 4) == ()
    assert dsa_layer_skips_topk(mc.hf_config, 4)  # upstream sends the top-k for a skip-topk stage start


def test_auto_handoff_resolves_to_transfer_at_startup(models, monkeypatch):
    """`--index-cache-pp-handoff auto` on glm-tiny at PP 2 (stage 1 starts on Shared layer 4):
    the launch runs transfer, installs no partition, and says why in the table's notes."""
    monkeypatch.delenv("SGLANG_PP_LAYER_PARTITION", raising=False)
    mc = model_config(models["glm-tiny"], attention_backend="indexcache", index_cache_pp_handoff="auto", pp_size=2)
    s = mc.index_cache_schedule
    assert s.pp_handoff == "transfer" and s.layers[4].role is Role.SHARED
    assert s.received_sources(4, 8) == (s.layers[4].source,)
    assert "auto: transfer" in (s.handoff_note or "")
    assert "SGLANG_PP_LAYER_PARTITION" not in os.environ


@pytest.mark.parametrize("kwargs, needle", [
    (dict(attention_backend="dsa", index_cache_pattern="FSSFSS"),
     "--index-cache-pattern FSSFSS needs --attention-backend indexcache (got --attention-backend dsa)"),
    (dict(attention_backend="dsa", index_cache_freq=2),
     "--index-cache-freq 2 needs --attention-backend indexcache"),
    (dict(attention_backend="dsa", index_cache_pp_handoff="transfer"),
     "--index-cache-pp-handoff transfer needs --attention-backend indexcache"),
    (dict(attention_backend="indexcache", decode_attention_backend="dsa"),
     "--decode-attention-backend dsa with --attention-backend indexcache"),
    (dict(attention_backend="indexcache", prefill_attention_backend="torch_native", index_cache_pattern="FSSFSS"),
     "--prefill-attention-backend torch_native with --attention-backend indexcache"),
    (dict(attention_backend="indexcache", index_cache_pattern="FSSFSS", enable_two_batch_overlap=True),
     "--enable-two-batch-overlap with --attention-backend indexcache"),
])
def test_a_forward_mode_without_the_check_is_refused(models, kwargs, needle):
    with pytest.raises(ScheduleError) as e:
        model_config(models["deepseek-tiny"], **kwargs)
    assert needle in str(e.value)


def test_metadata_glue_graph_is_refused(models, monkeypatch):
    """With SGLang's metadata glue graph a replay does not call the backend's per-replay
    hook, where the check of the replayed graph and the counters live: refused at startup."""
    monkeypatch.setenv("SGLANG_ENABLE_METADATA_GLUE_GRAPH", "1")
    with pytest.raises(ScheduleError, match="SGLANG_ENABLE_METADATA_GLUE_GRAPH with --attention-backend indexcache"):
        model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="FSSFSS")
    assert sglang_pattern(model_config(models["deepseek-tiny"], attention_backend="dsa")) == "FFFFFF"  # stock untouched
    monkeypatch.setenv("SGLANG_ENABLE_METADATA_GLUE_GRAPH", "0")
    assert sglang_pattern(model_config(models["deepseek-tiny"], attention_backend="indexcache",
                                       index_cache_pattern="FSSFSS")) == "FSSFSS"


def test_topk_choice_is_checked_at_startup(models, monkeypatch):
    """SGLANG_INDEXCACHE_TOPK: an unknown value (`filter` too, since its kernel was removed),
    or a CUDA kernel (`v2`, `v2-paged`) set on CPU, is refused before weights load; `upstream`,
    or the variable unset (its default, v2-paged, does not apply on CPU), is served."""
    args = dict(attention_backend="indexcache", index_cache_pattern="FSSFSS")
    monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", "fastest")
    with pytest.raises(ScheduleError, match="SGLANG_INDEXCACHE_TOPK='fastest': choose one of upstream, v2, v2-paged"):
        model_config(models["deepseek-tiny"], **args)
    monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", "filter")
    with pytest.raises(ScheduleError, match="SGLANG_INDEXCACHE_TOPK='filter': choose one of upstream, v2, v2-paged"):
        model_config(models["deepseek-tiny"], **args)
    for kind in ("v2", "v2-paged"):
        monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", kind)
        with pytest.raises(ScheduleError, match=f"SGLANG_INDEXCACHE_TOPK={kind} with --device cpu"):
            model_config(models["deepseek-tiny"], **args)
    monkeypatch.setenv("SGLANG_INDEXCACHE_TOPK", "upstream")
    assert sglang_pattern(model_config(models["deepseek-tiny"], **args)) == "FSSFSS"
    monkeypatch.delenv("SGLANG_INDEXCACHE_TOPK")
    assert sglang_pattern(model_config(models["deepseek-tiny"], **args)) == "FSSFSS"


@pytest.mark.parametrize("value,refusal", [("many", "give a whole number"), ("-1", "give a whole number"),
                                           ("64", "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=64 with --device cpu"),
                                           ("0", None), ("", None)])
def test_paged_extend_rows_are_checked_at_startup(models, monkeypatch, value, refusal):
    """SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS (backend/paged_extend.py): not a count of tokens, or
    a route to DeepGEMM's kernel on CPU, is refused before weights load; 0 or unset is off."""
    monkeypatch.delenv("SGLANG_INDEXCACHE_TOPK", raising=False)
    monkeypatch.setenv("SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS", value)
    args = dict(attention_backend="indexcache", index_cache_pattern="FSSFSS")
    if refusal is None:
        assert sglang_pattern(model_config(models["deepseek-tiny"], **args)) == "FSSFSS"
    else:
        with pytest.raises(ScheduleError, match=refusal):
            model_config(models["deepseek-tiny"], **args)


def test_hybrid_of_indexcache_with_itself_is_served(models):
    mc = model_config(models["deepseek-tiny"], attention_backend="indexcache", prefill_attention_backend="indexcache",
                      decode_attention_backend="indexcache", index_cache_pattern="FSSFSS")
    assert sglang_pattern(mc) == "FSSFSS"


def test_stock_sglang_is_untouched_without_flags(models):
    mc = model_config(models["deepseek-tiny"], attention_backend="dsa")
    assert getattr(mc, "index_cache_schedule", None) is None
    assert sglang_pattern(mc) == "FFFFFF"


def test_override_trap_upstream_vs_ours(models):
    """DESIGN.md's trap: transformers fills indexer_types before overrides apply."""
    override = json.dumps({"index_topk_freq": 6, "index_skip_topk_offset": 1})
    stock = model_config(models["glm-tiny"], attention_backend="dsa", json_model_override_args=override)
    assert sglang_pattern(stock) == "FFFSSSFS"  # upstream silently ignores the override
    ours = model_config(models["glm-tiny"], attention_backend="indexcache", json_model_override_args=override)
    assert sglang_pattern(ours) == "FSSSSSFS"  # the override takes effect
    assert any("transformers filled in indexer_types" in n for n in ours.index_cache_schedule.notes)


def test_override_indexer_types_null_is_honoured(models):
    override = json.dumps({"indexer_types": None, "index_topk_freq": 6, "index_skip_topk_offset": 1})
    mc = model_config(models["glm-tiny"], attention_backend="indexcache", json_model_override_args=override)
    assert sglang_pattern(mc) == "FSSSSSFS"


def test_schedule_needing_missing_weights_is_refused(models):
    # glm-tiny has indexer weights on layers 0, 1, 2, 6 only (like GLM-5.2's checkpoint).
    with pytest.raises(ScheduleError, match=r"layer 4 \(FULL"):
        model_config(models["glm-tiny"], attention_backend="indexcache", index_cache_freq=4, index_cache_offset=1)


def test_dummy_weights_skip_the_weight_check(models):
    mc = model_config(models["glm-tiny"], attention_backend="indexcache", index_cache_freq=4, index_cache_offset=1,
                      load_format="dummy")
    assert sglang_pattern(mc) == "FSSSFSSS"
    assert not mc.index_cache_schedule.indexer_weights_checked


def test_non_dsa_model_is_refused(models):
    with pytest.raises(ScheduleError, match="needs a DeepSeek Sparse Attention model"):
        model_config(models["llama-tiny"], index_cache_freq=2, load_format="dummy")


def test_draft_model_gets_its_own_all_full_schedule(models, caplog, monkeypatch):
    import logging

    import sglang_indexcache.integration.model_config as mc_module

    monkeypatch.setattr(mc_module, "_logged", set())
    sa = ServerArgs(model_path=models["glm-tiny"], device="cpu", attention_backend="indexcache",
                    index_cache_pattern="FSSSSSFS")
    with caplog.at_level(logging.INFO, logger="sglang_indexcache"):
        target = ModelConfig.from_server_args(sa)
        draft = ModelConfig.from_server_args(sa, is_draft_model=True)
    assert target.index_cache_schedule.pattern == "FSSSSSFS"
    s = draft.index_cache_schedule
    assert s.pattern == "F" and s.layers[0].reason == "draft layer: runs its own indexer"
    # glm-tiny declares GLM-5.2's freq-4 rule; the draft's config runs every layer id Full
    assert sglang_pattern(draft) == "F" * 8 and draft.hf_config.architectures[0].endswith("NextN")
    text = caplog.text
    assert text.count("IndexCache schedule:") == 2 and "IndexCache, draft model:" in text
    assert text.index("pattern: FSSSSSFS") < text.index("IndexCache, draft model:")


def test_stock_sglang_draft_is_untouched(models):
    sa = ServerArgs(model_path=models["glm-tiny"], device="cpu", attention_backend="dsa")
    draft = ModelConfig.from_server_args(sa, is_draft_model=True)
    assert getattr(draft, "index_cache_schedule", None) is None
    assert sglang_pattern(draft) == "FFFSSSFS"


def test_pipeline_stage_starts_use_sglangs_partition(monkeypatch):
    assert stage_starts(78, 2) == [0, 39]
    assert stage_starts(7, 2) == [0, 3]  # SGLang gives the extra layer to the last stage
    monkeypatch.setenv("SGLANG_PP_LAYER_PARTITION", "38,40")
    assert stage_starts(78, 2) == [0, 38]


def test_pipeline_promotion_in_the_model_config(models, monkeypatch):
    # deepseek-tiny: 6 layers, pp 2 -> stages start at 0 and 3.
    mc = model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="FSSSSS",
                      pp_size=2)
    s = mc.index_cache_schedule
    assert s.layers[3].role is Role.PROMOTED and s.layers[4].source == 3
    assert sglang_pattern(mc) == "FSSFSS"
    monkeypatch.setenv("SGLANG_PP_LAYER_PARTITION", "2,4")
    mc = model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="FSSSSS",
                      pp_size=2)
    assert sglang_pattern(mc) == "FSFSSS"


def test_table_is_logged_once_per_process(models, caplog, monkeypatch):
    import logging

    import sglang_indexcache.integration.model_config as mc_module

    monkeypatch.setattr(mc_module, "_logged", set())
    with caplog.at_level(logging.INFO, logger="sglang_indexcache"):
        model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="SSFSSF")
        model_config(models["deepseek-tiny"], attention_backend="indexcache", index_cache_pattern="SSFSSF")
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum(m.startswith("IndexCache schedule: 6 layers") for m in infos) == 1
    assert any(m.startswith("    0      0  PROMOTED") for m in infos)


def test_draft_flag_given_positionally_is_honoured(models):
    sa = ServerArgs(model_path=models["deepseek-tiny"], device="cpu", index_cache_pattern="FSSFSS")
    draft = ModelConfig.from_server_args(sa, models["deepseek-tiny"], None, True)
    assert draft.index_cache_schedule.source.startswith("draft model")  # not the target's FSSFSS
    assert sglang_pattern(draft) == "FFFFFF"


def test_a_draft_without_indexer_weights_is_refused_before_weights_load(models, tmp_path):
    """MTP over a checkpoint whose NextN layer has no indexer weights: the draft runs its own
    indexer on every layer, so the launch is refused naming the flag; with the weights listed
    (or dummy weights) it passes."""
    import shutil

    spec = dict(attention_backend="indexcache", index_cache_pattern="FSSFSS", speculative_algorithm="EAGLE",
                speculative_num_steps=1, speculative_eagle_topk=1, speculative_num_draft_tokens=2)
    with pytest.raises(ScheduleError, match=r"--speculative-algorithm EAGLE: the draft model's NextN layer\(s\) \[6\]"):
        model_config(models["deepseek-tiny"], **spec)
    model_config(models["deepseek-tiny"], load_format="dummy", **spec)

    with_mtp = tmp_path / "with-mtp"
    shutil.copytree(models["deepseek-tiny"], with_mtp)
    names = {f"model.layers.{i}.self_attn.indexer.wk.weight": "model.safetensors" for i in range(7)}
    (with_mtp / "model.safetensors.index.json").write_text(json.dumps({"weight_map": names}))
    mc = model_config(str(with_mtp), **spec)
    assert mc.index_cache_schedule.pattern == "FSSFSS"
