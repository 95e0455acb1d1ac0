"""The schedule alone: published settings, validation, promotion, refusal (no SGLang)."""

import doctest

import pytest

import sglang_indexcache.schedule as schedule_module
from sglang_indexcache.schedule import (
    IndexCacheFlags,
    Role,
    ScheduleError,
    build_schedule,
)

# THUDM's published GLM-5 (78 layers) greedy-search patterns (DESIGN.md).
GLM5_HALF = "FFSFSSSFSSFFFSSSFFFSFSSSSSSFFSFFSFFSSFFFFFFSFFFFFSFFSSSSSSFSFFFSFSSSFSFFSFFSSS"
GLM5_QUARTER = "FFSFSSSFSSFSFSSSSSSSFSSSSSSFSSSFSFSSSSFFFFFSSSFFSSSFSSSSSSSSFSSSFSSSSSSFSFSSSS"
GLM52_CONFIG = {"index_topk_freq": 4, "index_skip_topk_offset": 3}
GLM52_FULL = [0, 1, 2] + list(range(6, 75, 4))


def full_layers(s):
    return [r.layer for r in s.layers if r.runs_indexer]


def test_docstring_example_runs():
    assert doctest.testmod(schedule_module).failed == 0


def test_glm52_published_settings():
    s = build_schedule(78, GLM52_CONFIG)
    assert full_layers(s) == GLM52_FULL
    assert s.num_indexers == 21
    assert all(r.role is not Role.PROMOTED for r in s.layers)
    # every Shared layer reuses the nearest earlier Full layer
    for r in s.layers:
        if r.role is Role.SHARED:
            assert r.source == max(f for f in GLM52_FULL if f < r.layer)


def test_glm52_flags_equal_config():
    by_flags = build_schedule(78, {}, flags=IndexCacheFlags(freq=4, offset=3))
    assert by_flags.pattern == build_schedule(78, GLM52_CONFIG).pattern


@pytest.mark.parametrize("pattern,n_full", [(GLM5_HALF, 40), (GLM5_QUARTER, 22)])
def test_glm5_published_patterns(pattern, n_full):
    s = build_schedule(78, {}, flags=IndexCacheFlags(pattern=pattern))
    assert s.pattern == pattern
    assert s.num_indexers == n_full
    assert s.indexer_types() == ["full" if c == "F" else "shared" for c in pattern]


def test_glm5_quarter_is_subset_of_half():
    assert all(h == "F" for q, h in zip(GLM5_QUARTER, GLM5_HALF) if q == "F")


def test_flag_offset_meaning_is_sglangs():
    # offset 1: uniform F S S S; no offset: SGLang's default (layers 0 and 1 Full).
    assert build_schedule(8, {}, flags=IndexCacheFlags(freq=4, offset=1)).pattern == "FSSSFSSS"
    assert build_schedule(8, {}, flags=IndexCacheFlags(freq=4)).pattern == "FFSSSFSS"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(pattern="FSXS"), r"only 'F' \(Full\) and 'S'.*\['X'\] at layer\(s\) \[2\]"),
        (dict(pattern="fsss"), r"only 'F'"),
        (dict(pattern=""), r"empty"),
        (dict(freq=0), r"--index-cache-freq must be >= 1"),
        (dict(freq=4, offset=0), r"--index-cache-offset must be >= 1"),
        (dict(offset=2), r"--index-cache-offset needs --index-cache-freq"),
        (dict(pattern="FSSS", freq=2), r"cannot be combined"),
        (dict(pattern="FSSS", offset=2), r"cannot be combined"),
        (dict(pp_handoff="send"), r"recompute.*transfer"),
    ],
)
def test_flag_validation_errors(kwargs, message):
    with pytest.raises(ScheduleError, match=message):
        IndexCacheFlags(**kwargs)


@pytest.mark.parametrize("pattern", ["FSS", "FSSSFSSSF"])
def test_pattern_length_must_match(pattern):
    with pytest.raises(ScheduleError, match=rf"has {len(pattern)} characters but the model has 8 layers.*layers 0-7"):
        build_schedule(8, {}, flags=IndexCacheFlags(pattern=pattern))


@pytest.mark.parametrize(
    "config,message",
    [
        ({"index_topk_pattern": "FSS"}, r"index_topk_pattern has 3 characters but the model has 4"),
        ({"index_topk_pattern": "FSxS"}, r"index_topk_pattern has characters other than"),
        ({"indexer_types": ["full", "shared"]}, r"indexer_types has 2 entries but the model has 4"),
        ({"indexer_types": ["full", "skip", "full", "full"]}, r"other than 'full'/'shared' at layer\(s\) \[1\]"),
        ({"index_topk_freq": 0}, r"index_topk_freq must be >= 1"),
        ({"index_topk_freq": 2, "index_skip_topk_offset": 0}, r"index_skip_topk_offset must be >= 1"),
        ({"cli_factor": 0}, r"cli_factor must be >= 1"),
    ],
)
def test_config_validation_errors(config, message):
    # SGLang reads these silently as Full (or crashes later); we refuse at startup.
    with pytest.raises(ScheduleError, match=message):
        build_schedule(4, config)


def test_leading_shared_is_promoted_when_weights_exist():
    s = build_schedule(6, {}, flags=IndexCacheFlags(pattern="SSFSSF"), indexer_weight_layers=range(6))
    assert s.layers[0].role is Role.PROMOTED
    assert "layer 0 has no earlier layer" in s.layers[0].reason
    assert s.layers[1].role is Role.SHARED and s.layers[1].source == 0
    assert s.pattern == "FSFSSF"
    assert s.indexer_types()[0] == "full"


def test_leading_shared_without_weights_is_refused():
    with pytest.raises(ScheduleError) as e:
        build_schedule(6, {}, flags=IndexCacheFlags(pattern="SSFSSF"), indexer_weight_layers={2, 5})
    msg = str(e.value)
    assert "layer 0 (PROMOTED" in msg
    assert "--index-cache-pattern SSFSSF" in msg  # the checkpoint's own layout, as a fix


def test_full_layer_without_weights_is_refused():
    # A GLM-5.2-style checkpoint (no indexer weights on Shared layers) with a schedule
    # that needs them: refuse before loading, naming every layer.
    with pytest.raises(ScheduleError, match=r"layer 3 \(FULL.*\n.*layer 4 \(FULL"):
        build_schedule(78, {}, flags=IndexCacheFlags(freq=1), indexer_weight_layers=GLM52_FULL)


def test_unknown_weights_allow_promotion():
    s = build_schedule(4, {"index_topk_pattern": "SSFS"})
    assert s.layers[0].role is Role.PROMOTED
    assert not s.indexer_weights_checked
    assert "not checked" in s.summary()


def test_stage_start_promoted_with_recompute():
    starts = [0, 39]
    s = build_schedule(78, GLM52_CONFIG, stage_starts=starts)
    assert s.layers[39].role is Role.PROMOTED and "pipeline stage 1" in s.layers[39].reason
    assert s.layers[40].source == 39
    assert all(r.source is None or s.layers[r.source].stage == r.stage for r in s.layers)
    assert "stage 0: layers 0-38, 12/39 indexers; stage 1: layers 39-77, 10/39 indexers" in s.summary()


def test_stage_start_transfer_keeps_shared_across_stages():
    s = build_schedule(78, GLM52_CONFIG, stage_starts=[0, 39], flags=IndexCacheFlags(pp_handoff="transfer"))
    assert s.layers[39].role is Role.SHARED and s.layers[39].source == 38
    assert "handed over" in s.layers[39].reason
    assert full_layers(s) == GLM52_FULL


def test_transfer_never_applies_to_layer_zero():
    s = build_schedule(4, {}, flags=IndexCacheFlags(pattern="SFSS", pp_handoff="transfer"))
    assert s.layers[0].role is Role.PROMOTED


def test_stage_start_without_weights_is_refused_with_options():
    with pytest.raises(ScheduleError) as e:
        build_schedule(78, GLM52_CONFIG, stage_starts=[0, 39], indexer_weight_layers=GLM52_FULL)
    msg = str(e.value)
    assert "layer 39 (PROMOTED: configured Shared, first layer of pipeline stage 1" in msg
    assert "SGLANG_PP_LAYER_PARTITION" in msg
    assert "--index-cache-pp-handoff transfer" in msg


def test_stage_start_on_full_layer_needs_nothing():
    s = build_schedule(78, GLM52_CONFIG, stage_starts=[0, 38], indexer_weight_layers=GLM52_FULL)
    assert not any(r.role is Role.PROMOTED for r in s.layers)


@pytest.mark.parametrize("starts", [[1, 4], [0, 4, 4], [0, 8], []])
def test_bad_stage_starts(starts):
    with pytest.raises(ScheduleError, match="stage starts"):
        build_schedule(8, {}, stage_starts=starts)


def test_configured_but_not_in_force_is_flagged():
    # transformers-style config: indexer_types all full AND index_topk_freq=4.
    config = {"indexer_types": ["full"] * 8, "index_topk_freq": 4, "index_skip_topk_offset": 1}
    s = build_schedule(8, config)
    assert s.pattern == "F" * 8  # what SGLang runs
    assert any("index_topk_freq=4" in n and "NOT in force" in n for n in s.notes)
    assert "WARNING: config index_topk_freq=4" in s.table()


def test_agreeing_sources_are_not_flagged():
    config = {"indexer_types": ["full", "shared", "shared", "shared"], "index_topk_freq": 4, "index_skip_topk_offset": 1}
    assert build_schedule(4, config).notes == ()


def test_flags_override_config_and_say_so():
    s = build_schedule(8, GLM52_CONFIG, flags=IndexCacheFlags(pattern="FSFSFSFS"))
    assert s.pattern == "FSFSFSFS"
    assert s.source == "--index-cache-pattern FSFSFSFS"
    assert any("is overridden by --index-cache-pattern" in n for n in s.notes)


def test_table_and_json_name_every_layer():
    s = build_schedule(8, GLM52_CONFIG)
    lines = s.table().splitlines()
    assert sum(1 for l in lines if l.strip() and l.split()[0].isdigit()) == 8
    d = s.to_dict()
    assert [x["role"] for x in d["layers"]] == ["full"] * 3 + ["shared"] * 3 + ["full", "shared"]
    assert d["pattern"] == "FFFSSSFS"


def test_shadowed_source_is_reported_not_validated():
    # SGLang never reads a source below the one in force; we warn instead of refusing.
    s = build_schedule(4, {"indexer_types": ["full"] * 4, "index_topk_pattern": "FSS"})
    assert s.pattern == "FFFF"
    assert any("index_topk_pattern is configured but NOT in force" in n for n in s.notes)


def test_kv_memory_counts_index_k_only_on_layers_that_run_an_indexer():
    from sglang_indexcache.kv_memory import kv_memory

    s = build_schedule(12, {"index_topk_pattern": "FSSSFSSSFSSS"})
    mem = kv_memory(s, kv_lora_rank=512, rope_dim=64, index_head_dim=128, kv_dtype="bf16")
    # latent row 576 x 2 B on all 12 layers; fp8 index key 128 B + one fp32 scale on 3
    assert mem["bytes_per_token_all_full"] == 12 * 1152 + 12 * 132
    assert mem["bytes_per_token"] == 12 * 1152 + 3 * 132
    # measured on the H200: SGLang's pool grew from 4,287,552 to 4,651,200 tokens (+8.48%)
    assert abs(mem["capacity_gain"] - (4651200 / 4287552 - 1)) < 0.002


def test_nearest_full_is_the_one_definition_of_a_source():
    from sglang_indexcache.schedule import nearest_full, pattern_sources
    from sglang_indexcache.tools.distill import groups

    assert nearest_full([True, False, False, True, False]) == [None, 0, 0, None, 3]
    assert pattern_sources("FFSFSS") == [None, None, 1, None, 3, 3]
    assert groups("FSSFS") == {0: [0, 1, 2], 3: [3, 4]}
    with pytest.raises(ScheduleError, match="layer 0 is Shared"):
        pattern_sources("SF")
    s = build_schedule(6, {}, flags=IndexCacheFlags(pattern="FSSFSS"))
    assert [r.source for r in s.layers] == pattern_sources("FSSFSS")


def test_fp8_latent_row_is_sglangs_scaled_layout():
    """SGLang 0.5.23's DSA pool stores an fp8 latent row as kv_lora_rank fp8 values, one float32
    scale per 128, and the rope part in bf16 (kv_cache_configurator's override dim)."""
    from sglang.srt.mem_cache.kv_cache_configurator import DSATokenToKVPool

    from sglang_indexcache.kv_memory import latent_row_bytes

    assert latent_row_bytes(512, 64, "bf16") == 1152
    blk, rope = DSATokenToKVPool.quant_block_size, DSATokenToKVPool.rope_storage_dtype.itemsize
    assert latent_row_bytes(512, 64, "fp8_e4m3") == 512 + 512 // blk * 4 + 64 * rope == 656
    with pytest.raises(ValueError, match="one of"):
        latent_row_bytes(512, 64, "fp16")



def test_host_memory_is_sglangs_host_pool_declaration():
    """--enable-hierarchical-cache: `plan`'s host bytes per token are what SGLang 0.5.23's host
    pools declare for this schedule: the MLA host pool's latent row on every layer, and the DSA
    indexer host pool's index-K only on the layers its declaration owns (not skip-topk)."""
    import types

    from sglang.srt.mem_cache.kv_cache_configurator import DSATokenToKVPool
    from sglang.srt.mem_cache.pool_host.dsa import make_dsa_indexer_pool_decl

    from sglang_indexcache.kv_memory import host_memory_line, kv_memory
    from sglang_indexcache.schedule import Role

    s = build_schedule(12, {"index_topk_pattern": "FSSSFSSSFSSS"})
    device_pool = types.SimpleNamespace(  # the attributes the declaration reads from the GPU pool
        page_size=64, index_page_size=64, index_head_dim=128, quant_block_size=DSATokenToKVPool.quant_block_size,
        skip_topk_layers=[r.role is not Role.FULL for r in s.layers])
    decl = make_dsa_indexer_pool_decl(device_pool)
    assert decl.owned_device_layers == (0, 4, 8)
    index = decl.storage_info.bytes_per_token_per_layer * len(decl.owned_device_layers)
    mem = kv_memory(s, kv_lora_rank=512, rope_dim=64, index_head_dim=128)
    assert mem["host_bytes_per_token"] == 12 * (512 + 64) * 2 + index == 12 * 1152 + 3 * 132
    line = host_memory_line(mem, 12)
    assert f"{12 * 1152 + 3 * 132} B" in line and "3 of 12 layers" in line
