"""Pipeline partitions: SGLang's even split mirrored, the aligned partition, handoff costs."""

from __future__ import annotations

import os

import pytest

from sglang_indexcache.pipeline import (
    AUTO, aligned_partition, choose_handoff, even_partition, handoff_report, report_lines, starts_of,
)
from sglang_indexcache.sharing import sglang_skips_topk

GLM52 = [not sglang_skips_topk({"index_topk_freq": 4, "index_skip_topk_offset": 3}, i) for i in range(78)]
DSV32_FREQ4 = [i % 4 == 0 for i in range(61)]  # DeepSeek-V3.2 depth, one indexer in four from layer 0


@pytest.mark.parametrize("n, pp", [(78, 2), (78, 3), (78, 4), (78, 6), (78, 8), (61, 4), (6, 2), (7, 3)])
def test_even_partition_is_sglangs(n, pp, monkeypatch):
    from sglang.srt.distributed.utils import get_pp_indices

    monkeypatch.delenv("SGLANG_PP_LAYER_PARTITION", raising=False)
    assert starts_of(even_partition(n, pp)) == [get_pp_indices(n, r, pp)[0] for r in range(pp)]


def test_glm52_pp2_is_the_users_workaround():
    """SGLang's even split starts stage 1 on layer 39 (Shared on GLM-5.2); users set 38,40."""
    assert GLM52[39] is False and GLM52[38] is True
    a = aligned_partition(GLM52, 2)
    assert a["partition"] == [38, 40] and a["moved"] == [1] and a["env"] == "SGLANG_PP_LAYER_PARTITION=38,40"


@pytest.mark.parametrize("full, pp", [(GLM52, 2), (GLM52, 3), (GLM52, 4), (GLM52, 6), (GLM52, 8), (DSV32_FREQ4, 4)])
def test_every_stage_starts_on_a_full_layer_and_no_closer_partition_exists(full, pp):
    a = aligned_partition(full, pp)
    n = len(full)
    assert sum(a["partition"]) == n and min(a["partition"]) > 0
    assert all(full[s] for s in a["starts"])
    even = starts_of(even_partition(n, pp))
    # each boundary's nearest Full layer bounds the total distance from below
    nearest = sum(min(abs(f - e) for f in range(1, n) if full[f]) for e in even[1:])
    assert sum(a["moved"]) == nearest


def test_glm52_pp8_moves_two_layers_at_most_per_boundary():
    a = aligned_partition(GLM52, 8)
    assert max(a["moved"]) <= 2, a


def test_no_aligned_partition_when_too_few_full_layers():
    assert aligned_partition([True] + [False] * 7, 2) is None
    assert aligned_partition([True, False, False, True, False, False], 3) is None  # one Full layer past 0
    assert aligned_partition([True, False, False, True, False, False], 2)["partition"] == [3, 3]


def test_handoff_report_counts_what_each_handoff_costs():
    r = handoff_report(GLM52, 8, 2048, starts_of(even_partition(78, 8)))
    assert r["shared_stage_starts"] == [9, 28, 48, 68]
    assert r["recompute_extra_indexer_layers"] == 4
    assert r["transfer_bytes_per_token"] == {"9": 8192, "28": 8192, "48": 8192, "68": 8192}
    text = "\n".join(report_lines(r, 8))
    assert "SGLANG_PP_LAYER_PARTITION=" in text and "+4 indexer layer(s)" in text
    aligned = handoff_report(GLM52, 2, 2048, [0, 38])
    assert aligned["shared_stage_starts"] == [] and "no handoff needed" in report_lines(aligned, 2)[1]


def test_plan_prints_the_handoffs(models, capsys):
    from sglang_indexcache import cli

    assert "SGLANG_PP_LAYER_PARTITION" not in os.environ
    assert cli.main(["plan", "--model-path", models["glm-5.2"], "--pp-size", "2", "--load-format", "dummy"]) == 0
    out = capsys.readouterr().out
    assert "pipeline, PP 2: stages start at layers 0, 39" in out
    assert "align: SGLANG_PP_LAYER_PARTITION=38,40" in out
    assert "into layer 39: 8192 B" in out


def even_starts(n, pp):
    return starts_of(even_partition(n, pp))


@pytest.mark.parametrize("pp", [2, 3, 4, 6, 8])
def test_auto_transfers_wherever_a_stage_starts_on_a_shared_layer(pp):
    """The PP 2 table (session 7, two H200s): transfer was the fastest handoff at every length,
    so auto takes it, with or without indexer weights to promote, and installs no partition."""
    starts = even_starts(78, pp)
    shared = [s for s in starts[1:] if not GLM52[s]]
    got = choose_handoff(GLM52, pp, "auto", stage_starts=starts)
    assert shared, "GLM-5.2's even split starts some stage on a Shared layer at every PP size here"
    assert got["handoff"] == "transfer" and got["partition"] is None
    assert got["why"].startswith(AUTO) and str(shared) in got["why"]


def test_auto_keeps_a_users_partition_and_transfers_into_its_shared_starts():
    got = choose_handoff(GLM52, 2, "auto", stage_starts=[0, 39], user_partition=True)
    assert got["handoff"] == "transfer" and got["partition"] is None and "kept" in got["why"]
    got = choose_handoff(GLM52, 2, "auto", stage_starts=[0, 38], user_partition=True)  # 38 is Full
    assert got["handoff"] == "recompute" and "kept" in got["why"]  # nothing to hand over
    # align is still there for the asking, whatever it moves
    got = choose_handoff(GLM52, 8, "align", stage_starts=even_starts(78, 8))
    assert got["handoff"] == "align" and got["partition"]["moved"] == [1, 0, 2, 0, 2, 0, 2]


def test_deepseek_v32_freq4():
    # 61 layers at PP 4: even starts 15, 30, 45 (Shared); Full layers at multiples of 4, so
    # aligning moves 1, 2, 1 layers; auto transfers into all three
    got = choose_handoff(DSV32_FREQ4, 4, "auto", stage_starts=even_starts(61, 4))
    assert got["handoff"] == "transfer" and "[15, 30, 45]" in got["why"]
    aligned = choose_handoff(DSV32_FREQ4, 4, "align", stage_starts=even_starts(61, 4))["partition"]
    assert aligned["moved"] == [1, 2, 1] and all(s % 4 == 0 for s in aligned["starts"])


def test_a_users_partition_is_kept_and_align_falls_back_to_recompute():
    got = choose_handoff(GLM52, 2, "align", stage_starts=[0, 39], user_partition=True)
    assert got["handoff"] == "recompute" and got["partition"] is None and "kept" in got["why"]


def test_align_without_an_aligned_partition_is_refused():
    full = [c == "F" for c in "FSSSSS"]
    with pytest.raises(ValueError, match="no partition of 6 layers into 2 stages"):
        choose_handoff(full, 2, "align", stage_starts=[0, 3])
    assert choose_handoff(full, 2, "auto", stage_starts=[0, 3])["handoff"] == "transfer"


def test_recompute_and_transfer_are_taken_as_asked():
    for h in ("recompute", "transfer"):
        assert choose_handoff(GLM52, 2, h, stage_starts=[0, 39]) == {"handoff": h, "partition": None, "why": None}


def test_plan_with_align_installs_the_partition_in_sglangs_variable(models, capsys, monkeypatch):
    """`plan --pp-handoff align` (and a server's ModelConfig hook, which runs the same code)
    sets SGLANG_PP_LAYER_PARTITION, the variable SGLang's get_pp_indices reads."""
    from sglang.srt.distributed.utils import get_pp_indices

    from sglang_indexcache import cli

    for var in ("SGLANG_PP_LAYER_PARTITION", "SGLANG_INDEXCACHE_PP_PARTITION"):
        # set then removed, so monkeypatch records the variable and removes what plan sets
        # (a delenv of an absent variable records nothing, and the partition leaked into later tests)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    assert cli.main(["plan", "--model-path", models["glm-5.2"], "--pp-size", "2", "--load-format", "dummy",
                     "--pp-handoff", "align"]) == 0
    out = capsys.readouterr().out
    assert "pipeline handoff=align; stage 0: layers 0-37" in out and "SGLANG_PP_LAYER_PARTITION=38,40" in out
    assert "PROMOTED" not in out and "no handoff needed" in out
    assert os.environ["SGLANG_PP_LAYER_PARTITION"] == "38,40" and get_pp_indices(78, 1, 2) == (38, 78)
    # run again, as a scheduler process does with the launcher's environment: the same choice
    assert cli.main(["plan", "--model-path", models["glm-5.2"], "--pp-size", "2", "--load-format", "dummy",
                     "--pp-handoff", "align"]) == 0
    assert "pipeline handoff=align" in capsys.readouterr().out
