"""Contract with SGLang 0.5.23: every place its source names the backend "dsa" is listed in
`integration/dsa_sites.py` with how `indexcache` meets it; a new, changed or removed site
fails here until it is classified. The refused ones are refused at startup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sglang_indexcache.integration.dsa_sites import HOOKED, REFUSED, SITES
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


def test_hooked_sites_are_hooked():
    from sglang_indexcache.backend.hooks import register_model_dispatch

    register_model_dispatch()
    from sglang.srt.models.deepseek_common import utils
    from sglang.srt.models.deepseek_common.attention_backend_handler import AttentionBackendRegistry

    assert "indexcache" in utils.FORWARD_ABSORB_CORE_ATTENTION_BACKENDS
    assert AttentionBackendRegistry._handlers["indexcache"] is AttentionBackendRegistry._handlers["dsa"]
    assert sum(how == HOOKED for how, _ in SITES.values()) == 4


@pytest.mark.parametrize("kwargs, needle", [
    (dict(enable_prefill_cp=True), "--enable-prefill-cp"),
    (dict(dsa_decode_backend="trtllm"), "--dsa-decode-backend trtllm"),
    (dict(dsa_prefill_backend="trtllm"), "--dsa-prefill-backend trtllm"),
])
def test_refused_sites_are_refused_at_startup(models, kwargs, needle):
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.server_args import ServerArgs

    sa = ServerArgs(model_path=models["deepseek-tiny"], device="cpu", attention_backend="indexcache", **kwargs)
    with pytest.raises(ScheduleError, match=re.escape(needle)):
        ModelConfig.from_server_args(sa)
    assert sum(how == REFUSED for how, _ in SITES.values()) == 3
