"""`--index-cache-switchable`: one server, its pattern switched between requests (pattern search).

On SGLang's CPU engine with deepseek-tiny (6 layers, indexer weights on each). A server started
under FSSFSS is switched to FSFSFS through POST /index_cache/pattern with the admin key; its
prompt log-probabilities then equal those of a normal server started with FSFSFS, and its
per-forward counters show the new roles. Bad switches (no key, a wrong key, a wrong length, a
Shared layer 0, a request still running) change nothing and say why.
"""

from __future__ import annotations

import json
import random
import re
import threading
import urllib.error
import urllib.request

import pytest

from sglang_indexcache.schedule import ScheduleError, switched_schedule
from sglang_indexcache.integration.switch import ROUTE, decode, encode
from sglang_indexcache.server import Server

KEY = "test-admin-key"
ARGS = ["--dtype", "float32", "--max-total-tokens", "16384", "--attention-backend", "indexcache", "--sleep-on-idle"]


def prompts() -> list:
    rng = random.Random(7)
    return [[rng.randrange(10, 1000) for _ in range(n)] for n in (150, 400)]


def logprobs(srv: Server) -> list:
    return [[x[0] for x in srv.generate(p, 4, logprobs=True)["meta_info"]["input_token_logprobs"][1:]]
            for p in prompts()]


def switch(srv: Server, pattern, key=KEY) -> tuple:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(srv.url + ROUTE, data=json.dumps({"pattern": pattern}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        return e.code, (json.loads(body) if body.startswith("{") else body)


@pytest.mark.parametrize("pattern", ["FSSFSS", "F" * 61 + "S" * 17, "S" * 130, "F" * 130])
def test_the_pattern_crosses_sglangs_numeric_channel(pattern):
    values = encode(pattern)
    assert all(isinstance(v, int) and 0 <= v < 2**60 for v in values.values())
    assert decode(values) == pattern


def test_a_switch_is_validated_against_the_layers_built_with_an_indexer():
    assert switched_schedule(6, "FSFSFS", range(6)).pattern == "FSFSFS"
    for pattern, needle in [("SSFSFS", "layer 0 is Shared"), ("FSF", "3 characters but the model has 6"),
                            ("FSXSFS", "only 'F'"), (None, "must be a string"),
                            ("FSFSFF", r"layer\(s\) \[5\] are Full in the pattern but have no indexer")]:
        with pytest.raises(ScheduleError, match=needle):
            switched_schedule(6, pattern, range(5))


@pytest.mark.engine
def test_switch_a_running_server(models, tmp_path):
    model = models["deepseek-tiny"]
    with Server(model, [*ARGS, "--index-cache-pattern", "FSFSFS"], log=tmp_path / "ref.log") as ref:
        want = logprobs(ref)
        assert switch(ref, "FSSFSS")[0] == 404  # a normal server has no such route

    srv = Server(model, [*ARGS, "--index-cache-pattern", "FSSFSS", "--index-cache-switchable", "--admin-api-key", KEY],
                 log=tmp_path / "switchable.log", stats_file=tmp_path / "stats.json")
    with srv:
        before = logprobs(srv)
        assert srv.stats()["last_forward"]["ran"] == [0, 3]
        assert switch(srv, "FSFSFS", key=None)[0] in (401, 403)
        assert switch(srv, "FSFSFS", key="wrong")[0] in (401, 403)
        for bad, needle in [("FSFS", "4 characters"), ("SSFSFS", "layer 0")]:
            code, body = switch(srv, bad)
            assert code == 400 and needle in body["error"], (code, body)

        # a request in flight: the switch is refused and the old pattern stays
        busy = threading.Thread(target=srv.generate, args=(prompts()[0], 1000))
        busy.start()
        try:
            threading.Event().wait(1.0)  # the request is queued or running (1000 tokens take longer)
            code, body = switch(srv, "FSFSFS")
        finally:
            busy.join()
        assert code == 409 and "running or waiting" in body["error"], (code, body)
        assert srv.stats()["pattern"] == "FSSFSS"

        code, body = switch(srv, "FSFSFS")
        assert code == 200 and body["pattern"] == "FSFSFS" and "layer" in body["table"], (code, body)
        got = logprobs(srv)
        stats = srv.stats()
        assert stats["pattern"] == "FSFSFS" and stats["last_forward"]["ran"] == [0, 2, 4]
        assert stats["last_forward"]["reused"] == {"1": 0, "3": 2, "5": 4}
    worst = max(abs(a - b) for x, y in zip(got, want) for a, b in zip(x, y))
    moved = max(abs(a - b) for x, y in zip(before, want) for a, b in zip(x, y))
    print(f"switched vs started with FSFSFS: max |d logprob| {worst:.2e}; before the switch {moved:.2e}")
    assert worst <= 1e-5 < moved


@pytest.mark.parametrize("kwargs, needle", [
    (dict(), "no --admin-api-key"),
    (dict(admin_api_key=KEY, enable_hierarchical_cache=True), "--enable-hierarchical-cache"),
    (dict(admin_api_key=KEY, speculative_algorithm="EAGLE"), "--speculative-algorithm"),
])
def test_what_a_switchable_server_cannot_serve_is_refused_at_startup(models, kwargs, needle):
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.server_args import ServerArgs

    sa = ServerArgs(model_path=models["deepseek-tiny"], device="cpu", attention_backend="indexcache",
                    index_cache_switchable=True, **kwargs)
    with pytest.raises(ScheduleError, match=f"--index-cache-switchable is not served with .*{needle}"):
        ModelConfig.from_server_args(sa)


def test_cuda_graphs_are_refused_with_a_switchable_server():
    """A graph captured under one pattern must never replay under another: on a GPU the flag
    needs --disable-cuda-graph (the CUDA backend also refuses to switch once it has captured)."""
    import types

    from sglang_indexcache.integration.launch import _check_switchable

    args = dict(device="cuda", admin_api_key=KEY, pp_size=1, speculative_algorithm=None,
                enable_hierarchical_cache=False)
    with pytest.raises(ScheduleError, match="without --disable-cuda-graph"):
        _check_switchable(types.SimpleNamespace(**args, disable_cuda_graph=False))
    _check_switchable(types.SimpleNamespace(**args, disable_cuda_graph=True))
    # SGLang ranks the per-phase selectors and --cuda-graph-config above --disable-cuda-graph, so
    # each of them would capture (and later replay) graphs under the pattern the server started with
    kept = [
        (dict(cuda_graph_backend_prefill="breakable"), "--cuda-graph-backend-prefill breakable"),
        (dict(cuda_graph_backend_decode="full"), "--cuda-graph-backend-decode full"),
        (dict(cuda_graph_config='{"prefill": {"backend": "breakable"}}'), "--cuda-graph-config prefill backend breakable"),
        (dict(cuda_graph_config={"decode": {"backend": "full", "max_bs": 8}}), "--cuda-graph-config decode backend full"),
        (dict(cuda_graph_config="{not json"), "--cuda-graph-config that is not JSON"),
    ]
    for extra, needle in kept:
        with pytest.raises(ScheduleError, match=re.escape(needle) + r" \(it outranks --disable-cuda-graph"):
            _check_switchable(types.SimpleNamespace(**args, disable_cuda_graph=True, **extra))
    for off in (dict(cuda_graph_backend_prefill="disabled", cuda_graph_backend_decode=None),
                dict(cuda_graph_config='{"prefill": {"backend": "disabled"}, "decode": {"max_bs": 4}}')):
        _check_switchable(types.SimpleNamespace(**args, disable_cuda_graph=True, **off))
    # the selectors turn nothing on for a CPU server (no CUDA graphs there)
    _check_switchable(types.SimpleNamespace(**{**args, "device": "cpu"}, disable_cuda_graph=False,
                                            cuda_graph_backend_prefill="breakable"))


def test_a_cuda_graph_phase_kept_past_disable_cuda_graph_is_refused_at_startup(models):
    """The same refusal through SGLang's own ServerArgs and ModelConfig, as a launch builds them."""
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.server_args import ServerArgs

    sa = ServerArgs(model_path=models["deepseek-tiny"], device="cuda", attention_backend="indexcache",
                    index_cache_switchable=True, admin_api_key=KEY, disable_cuda_graph=True,
                    cuda_graph_backend_prefill="breakable")
    with pytest.raises(ScheduleError, match="--cuda-graph-backend-prefill breakable .it outranks"):
        ModelConfig.from_server_args(sa)


def test_the_pattern_info_metric_follows_a_switch():
    from prometheus_client import REGISTRY

    from sglang_indexcache.backend.metrics import IndexerMetrics

    labels = {"model_name": "switch-test", "tp_rank": 0, "pp_rank": 0}
    m = IndexerMetrics(switched_schedule(6, "FSSFSS", range(6)), labels)
    m.set_schedule(switched_schedule(6, "FSFSFS", range(6)))

    def value(pattern, full):
        return REGISTRY.get_sample_value("sglang:indexcache_pattern_info",
                                         {**{k: str(v) for k, v in labels.items()}, "pattern": pattern,
                                          "full_layers": full, "layers": "6"})

    assert value("FSSFSS", "2") == 0 and value("FSFSFS", "3") == 1
