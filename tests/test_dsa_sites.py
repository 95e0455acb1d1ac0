"""Contract with SGLang 0.5.23: every place its source names the backend "dsa" is listed in
`integration/dsa_sites.py` with how `indexcache` meets it; a new, changed or removed site
fails here until it is classified. The refused ones are refused at startup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sglang_indexcache.integration.dsa_sites import REFUSED, SEES_DSA, SITES
from sglang_indexcache.schedule import ScheduleError

LITERAL = re.compile(r"""["']dsa["']""")


def scan() -> set:
    import sglang

    root = Path(sglang.__file__).parent
    found = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("test/"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            if LITERAL.search(line):
                found.add((rel, line.strip()))
    return found


def test_every_dsa_name_site_in_sglang_is_classified():
    found = scan()
    new = sorted(found - set(SITES))
    gone = sorted(set(SITES) - found)
    assert not new, f"SGLang names 'dsa' at sites indexcache has not classified: {new}"
    assert not gone, f"classified sites no longer in SGLang's source (update dsa_sites.py): {gone}"


def test_the_scan_is_not_blind():
    found = scan()
    assert ("srt/layers/cp/base.py", 'if value == "dsa":') in found
    assert len(found) == len(SITES) and len({how for how, _ in SITES.values()}) == 4


def test_sglang_reads_indexcache_as_dsa_and_builds_ours_under_that_name(monkeypatch):
    """The one mechanism: `attention_backends_of` (every site's source of the name) answers
    `dsa`, and SGLang's `dsa` factory builds the IndexCache backend for a model with an
    IndexCache schedule, SGLang's own for any other."""
    import types

    from sglang.srt.arg_groups import overrides
    from sglang.srt.arg_groups.model_override_base import attention_backends_of
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

    from sglang_indexcache.schedule import build_schedule

    def cfg(base, prefill=None, decode=None):
        return types.SimpleNamespace(attention_backend=base, prefill_attention_backend=prefill,
                                     decode_attention_backend=decode)

    for fn in (attention_backends_of, overrides.attention_backends_of):  # the re-export is hooked too
        assert fn(cfg("indexcache")) == ("dsa", "dsa")
        assert fn(cfg("fa3", "indexcache", "indexcache")) == ("dsa", "dsa")
        assert fn(cfg("fa3", None, "flashinfer")) == ("fa3", "flashinfer")
    factory = ATTENTION_BACKENDS["dsa"]
    monkeypatch.setattr(factory, "index_cache_upstream", lambda runner: ("upstream", runner))
    plain = types.SimpleNamespace(device="cuda", model_config=types.SimpleNamespace())
    assert factory(plain) == ("upstream", plain)
    ours = types.SimpleNamespace(device="xpu", is_draft_worker=False,
                                 model_config=types.SimpleNamespace(index_cache_schedule=build_schedule(4, {})))
    with pytest.raises(NotImplementedError, match="runs on CUDA and CPU, not on 'xpu'"):
        factory(ours)  # the IndexCache factory, refusing a device it has no path for
    assert sum(how == SEES_DSA for how, _ in SITES.values()) == 5


@pytest.mark.parametrize("kwargs, needle", [
    (dict(enable_prefill_cp=True), "--enable-prefill-cp"),
    (dict(dsa_decode_backend="trtllm"), "--dsa-decode-backend trtllm"),
    (dict(dsa_prefill_backend="trtllm"), "--dsa-prefill-backend trtllm"),
    (dict(speculative_algorithm="EAGLE", speculative_draft_attention_backend="indexcache"),
     "--speculative-draft-attention-backend indexcache"),
])
def test_refused_sites_are_refused_at_startup(models, kwargs, needle):
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.server_args import ServerArgs

    sa = ServerArgs(model_path=models["deepseek-tiny"], device="cpu", attention_backend="indexcache", **kwargs)
    with pytest.raises(ScheduleError, match=re.escape(needle)):
        ModelConfig.from_server_args(sa)
    assert sum(how == REFUSED for how, _ in SITES.values()) == 3
