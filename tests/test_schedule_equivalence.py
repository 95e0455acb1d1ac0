"""Our schedule against SGLang 0.5.23's own `dsa_layer_skips_topk`, property-based."""

import types

from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.srt.configs.model_config import dsa_layer_skips_topk

from sglang_indexcache.schedule import IndexCacheFlags, Role, ScheduleError, build_schedule
from sglang_indexcache.sharing import sglang_skips_topk

ARCHS = ["DeepseekV32ForCausalLM", "GlmMoeDsaForCausalLM"]


def hf_config(arch, sources):
    """A config object as SGLang sees it: attributes, absent keys missing."""
    return types.SimpleNamespace(architectures=[arch], index_topk=64, **{k: v for k, v in sources.items() if v is not None})


def configs(max_layers=40):
    # Everything SGLang's function accepts without asserting: any indexer_types values and
    # lengths, any pattern characters and lengths, positive factors.
    return st.fixed_dictionaries(
        {
            "indexer_types": st.none() | st.lists(st.sampled_from(["full", "shared", "dense"]), max_size=max_layers + 3),
            "cli_factor": st.none() | st.integers(1, 5),
            "index_topk_pattern": st.none() | st.text(alphabet="FSx", max_size=max_layers + 3),
            "index_topk_freq": st.none() | st.integers(1, 6),
            "index_skip_topk_offset": st.none() | st.integers(1, 7),
        }
    )


def malformed(n, c):
    """Independent statement of what our validation must reject: the source in force
    (SGLang's precedence) when it does not give exactly one valid entry per layer."""
    t, p = c["indexer_types"], c["index_topk_pattern"]
    if t is not None:
        return len(t) != n or any(x not in ("full", "shared") for x in t)
    if (c["cli_factor"] or 1) > 1:
        return False
    return p is not None and (len(p) != n or any(ch not in "FS" for ch in p))


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 40), c=configs(), arch=st.sampled_from(ARCHS))
def test_rule_equals_sglang_for_every_accepted_input(n, c, arch):
    cfg = hf_config(arch, c)
    for layer in range(n + 2):
        assert sglang_skips_topk(c, layer) == dsa_layer_skips_topk(cfg, layer), (c, layer)


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 40), c=configs(), arch=st.sampled_from(ARCHS))
def test_schedule_roles_equal_sglang_except_promotion(n, c, arch):
    present = {k: v for k, v in c.items() if v is not None}
    cfg = hf_config(arch, c)
    try:
        s = build_schedule(n, present)
    except ScheduleError:
        assert malformed(n, c)
        return
    assert not malformed(n, c)
    for r in s.layers:
        skips = dsa_layer_skips_topk(cfg, r.layer)
        if r.layer == 0 and skips:
            assert r.role is Role.PROMOTED  # upstream would run layer 0 with no source
        else:
            assert (r.role is Role.SHARED) == skips
    # No second source of truth: what we hand SGLang reads back as our roles.
    back = hf_config(arch, {"indexer_types": s.indexer_types()})
    assert [dsa_layer_skips_topk(back, i) for i in range(n)] == [r.role is Role.SHARED for r in s.layers]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 40),
    freq=st.integers(1, 8),
    offset=st.none() | st.integers(1, 9),
    arch=st.sampled_from(ARCHS),
)
def test_freq_flags_equal_sglang_config_keys(n, freq, offset, arch):
    s = build_schedule(n, {"indexer_types": ["full"] * n}, flags=IndexCacheFlags(freq=freq, offset=offset))
    cfg = hf_config(arch, {"index_topk_freq": freq, "index_skip_topk_offset": offset})
    assert [r.role is Role.SHARED for r in s.layers] == [dsa_layer_skips_topk(cfg, i) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(alphabet="FS", min_size=1, max_size=80), arch=st.sampled_from(ARCHS))
def test_pattern_flag_equals_sglang_pattern(pattern, arch):
    s = build_schedule(len(pattern), {}, flags=IndexCacheFlags(pattern=pattern))
    cfg = hf_config(arch, {"index_topk_pattern": pattern})
    expect = ["F" if (i == 0 or not dsa_layer_skips_topk(cfg, i)) else "S" for i in range(len(pattern))]
    assert s.pattern == "".join(expect)
    assert (s.layers[0].role is Role.PROMOTED) == (pattern[0] == "S")
