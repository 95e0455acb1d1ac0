"""One bad request never takes the server down (CPU engine, `indexcache` with sharing on).

One module-scoped server; a fixed set of probe requests is answered first, then each
fault is sent, and after every one the server must be healthy and give the probes their
earlier answers. The unit tests of the token-id check itself need no server.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.error
import urllib.request

import pytest

from sglang_indexcache.backend.metrics import FLUSH_S
from sglang_indexcache.integration.requests import check_token_ids
from sglang_indexcache.server import Server

PATTERN = "FSSFSS"
VOCAB = 1024  # deepseek-tiny
ARGS = ["--dtype", "float32", "--max-total-tokens", "16384", "--attention-backend", "indexcache",
        "--sleep-on-idle", "--index-cache-pattern", PATTERN, "--context-length", "1024", "--enable-metrics"]


def prompt(seed: int, n: int = 120) -> list:
    rng = random.Random(seed)
    return [rng.randrange(5, 1000) for _ in range(n)]


# ---- the check, without a server --------------------------------------------------------


@pytest.mark.parametrize("ids, message", [
    ([1, 2, VOCAB], r"input_ids\[2\] is 1024, out of the vocabulary: valid token ids are \[0, 1024\)"),
    ([-1], r"input_ids\[0\] is -1"),
    ([5] * 40000 + [VOCAB, -3], r"input_ids\[40000\] is 1024"),  # the first bad one, deep in a long prompt
    ([5] * 40000 + [-(2**63)], r"input_ids\[40000\] is -9223372036854775808"),
    ([10**9], r"input_ids\[0\] is 1000000000"),
    ([2**70], "flat list of integer token ids"),
    ([1.5], "flat list of integer token ids"),
    (["7"], "flat list of integer token ids"),
    ([[1, 2]], "flat list of integer token ids"),
])
def test_token_id_check_names_the_field_and_the_bad_id(ids, message):
    with pytest.raises(ValueError, match=message):
        check_token_ids(ids, VOCAB)


@pytest.mark.parametrize("ids", [None, [], [0, VOCAB - 1], list(range(VOCAB))])
def test_token_id_check_passes_valid_ids(ids):
    check_token_ids(ids, VOCAB)


# ---- against a server ----------------------------------------------------------------------


def http(srv: Server, path: str, body, *, raw: bytes | None = None) -> tuple:
    return srv.request(path, body, raw=raw, timeout=120)


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("faults")
    srv = Server(models["deepseek-tiny"], ARGS, log=logs / "server.log", stats_file=logs / "stats.json")
    with srv:
        yield srv


PROBES = [prompt(1), prompt(2, 300), prompt(3, 40)]


@pytest.fixture(scope="module")
def probe_answers(server):
    return [server.generate(p, 8)["output_ids"] for p in PROBES]


def assert_still_serving(srv: Server, answers: list) -> None:
    assert srv.proc.poll() is None, srv.tail()
    assert srv.healthy(timeout=30), srv.tail()
    assert [srv.generate(p, 8)["output_ids"] for p in PROBES] == answers


def gen(ids, **sampling) -> dict:
    return {"input_ids": ids, "sampling_params": {"max_new_tokens": 4, "temperature": 0.0, **sampling}}


BAD_REQUESTS = {
    "id past the vocabulary": ("/generate", gen([5, 6, 10**9]), "input_ids[2] is 1000000000"),
    "id equal to vocab_size": ("/generate", gen([VOCAB]), "input_ids[0] is 1024"),
    "negative id": ("/generate", gen([5, -3]), "input_ids[1] is -3"),
    "one bad prompt in a batch": ("/generate", gen([[5, 6, 7], [8, VOCAB + 5]]), "input_ids[1] is 1029"),
    "float id": ("/generate", gen([5, 6.5]), None),
    "string id": ("/generate", gen(["x"]), None),
    "negative max_new_tokens": ("/generate", gen([5, 6], max_new_tokens=-1), None),
    "prompt longer than the context": ("/generate", gen(prompt(9, 3000)), "context length"),
    "max_new_tokens past the context": ("/generate", gen([5, 6], max_new_tokens=10**9), None),
    "token prompt on the OpenAI route": ("/v1/completions",
                                         {"model": "x", "prompt": [5, 6, 10**9], "max_tokens": 4}, "1000000000"),
    "wrong type of sampling_params": ("/generate", {"input_ids": [5, 6], "sampling_params": "greedy"}, None),
}


@pytest.mark.engine
@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_is_refused_and_the_server_keeps_serving(server, probe_answers, name):
    path, body, needle = BAD_REQUESTS[name]
    status, text = http(server, path, body)
    assert 400 <= status < 500, (status, text[:500])
    if needle:
        assert needle in text, text[:500]
    assert_still_serving(server, probe_answers)


@pytest.mark.engine
@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2, 3]", b'{"input_ids": ' + b"7, " * 200000 + b"7"])
def test_malformed_body_is_refused_and_the_server_keeps_serving(server, probe_answers, raw):
    status, text = http(server, "/generate", None, raw=raw)
    assert 400 <= status < 500, (status, text[:500])
    assert_still_serving(server, probe_answers)


@pytest.mark.engine
def test_counters_after_the_faults_match_the_schedule(server, probe_answers):
    """Fail-closed bookkeeping held through every refused request: runs = Full x forwards."""
    assert_still_serving(server, probe_answers)
    stats = server.stats()
    full = PATTERN.count("F")
    assert stats["indexer_runs"] == full * stats["forwards"]
    assert stats["indexer_skips"] == (len(PATTERN) - full) * stats["forwards"]


def prometheus(srv: Server) -> dict:
    """{(name, frozenset(labels)): value} of the indexcache metrics on /metrics."""
    with urllib.request.urlopen(srv.url + "/metrics", timeout=60) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^(sglang:indexcache_\w+)\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


@pytest.mark.engine
def test_prometheus_metrics_match_the_counters(server, probe_answers):
    """With --enable-metrics, SGLang's /metrics carries the indexer layer-calls run and skipped
    per forward mode and the pattern in force; they agree with the backend's own counters."""
    assert_still_serving(server, probe_answers)
    time.sleep(2 * FLUSH_S)  # the scheduler adds recorded counts to the counter once a FLUSH_S
    metrics, stats = prometheus(server), server.stats()
    calls = {(dict(k)["forward_mode"], dict(k)["outcome"]): v for (n, k), v in metrics.items()
             if n == "sglang:indexcache_indexer_layer_calls_total"}
    print(calls)
    assert sum(v for (mode, outcome), v in calls.items() if outcome == "run") == stats["indexer_runs"]
    assert sum(v for (mode, outcome), v in calls.items() if outcome == "skipped") == stats["indexer_skips"]
    assert {mode for mode, _ in calls} >= {"EXTEND", "DECODE"}
    info = [dict(k) for (n, k), v in metrics.items() if n == "sglang:indexcache_pattern_info" and v == 1]
    assert [(i["pattern"], i["full_layers"], i["layers"]) for i in info] == [(PATTERN, "2", "6")]


@pytest.mark.engine
def test_an_injected_fault_stops_the_server_naming_the_layer(models, tmp_path):
    """A Shared layer handed a foreign top-k: the forward raises IndexCacheError naming the
    layer, the client gets no tokens, and the launcher exits non-zero (an orchestrator then
    restarts it) instead of serving from a broken backend."""
    import time

    from sglang_indexcache.backend.store import FAULT_ENV

    srv = Server(models["deepseek-tiny"], [*ARGS, "--skip-server-warmup"], log=tmp_path / "fault.log")
    srv.env[FAULT_ENV] = "foreign"
    srv.env["SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION"] = "0"  # else /health's own 1-token forward trips it
    with srv:
        try:
            status, text = http(srv, "/generate", gen(prompt(1)))
        except OSError as e:  # the server went away mid-request
            status, text = None, str(e)
        assert status is None or status >= 500, (status, text[:500])
        assert "output_ids" not in text
        t0 = time.monotonic()
        code = srv.proc.wait(timeout=120)
        print(f"launcher exited with {code} {time.monotonic() - t0:.1f} s after the failed request")
        assert code != 0
    log = srv.log.read_text(errors="replace")
    assert "IndexCacheError: layer 1 (Shared) was handed the top-k of layer 0 from forward" in log
    assert "('foreign'" in log


@pytest.mark.engine
def test_clients_that_disconnect_mid_request_do_not_disturb_the_others(server, probe_answers):
    """12 concurrent clients: a third read two streamed chunks and hang up, a third give up
    on a non-streaming request after 0.3 s, a third wait; the waiting ones get their solo
    answers and the server keeps serving."""
    import concurrent.futures as cf
    import socket

    prompts = [prompt(200 + i, 60 + 17 * i) for i in range(12)]
    server.flush_cache()
    solo = {i: server.generate(prompts[i], 24)["output_ids"] for i in range(2, 12, 3)}

    def client(i):
        body = json.dumps(gen(prompts[i], max_new_tokens=24, ignore_eos=True) | ({"stream": True} if i % 3 == 0 else {}))
        req = urllib.request.Request(server.url + "/generate", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        if i % 3 == 0:  # streaming, hang up after two chunks
            with urllib.request.urlopen(req, timeout=120) as r:
                r.readline(), r.readline()
            return None
        if i % 3 == 1:  # non-streaming, give up early
            try:
                urllib.request.urlopen(req, timeout=0.3).read()
            except (socket.timeout, urllib.error.URLError, TimeoutError):
                pass
            return None
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())["output_ids"]

    with cf.ThreadPoolExecutor(12) as pool:
        got = list(pool.map(client, range(12)))
    assert {i: got[i] for i in solo} == solo
    assert_still_serving(server, probe_answers)


@pytest.mark.engine
def test_kv_pool_exhaustion_retracts_and_every_answer_equals_its_solo_run(server, models, tmp_path):
    """Retraction: the scheduler takes running requests out and prefills them again later; a
    retracted request's index-K and top-k are rebuilt, never reused stale, so every answer
    equals its solo run, and the counters still match the schedule.

    A small pool alone did not make SGLang 0.5.23 retract here (1280 tokens for 6 requests of
    up to 360, even with --schedule-conservativeness 0.05: admission keeps room for decode), so
    SGLang's own switch SGLANG_TEST_RETRACT runs the same retract path every 8 forwards."""
    import concurrent.futures as cf

    args = list(ARGS)
    args[args.index("--max-total-tokens") + 1] = "1280"
    srv = Server(models["deepseek-tiny"], args, log=tmp_path / "small-pool.log", stats_file=tmp_path / "stats.json")
    srv.env.update(SGLANG_TEST_RETRACT="1", SGLANG_TEST_RETRACT_INTERVAL="8")
    prompts = [prompt(300 + i, 150 + 10 * i) for i in range(6)]
    solo = []  # on the module's server: a large pool, no retraction
    for p in prompts:
        server.flush_cache()
        solo.append(server.generate(p, 160)["output_ids"])
    with srv:
        with cf.ThreadPoolExecutor(6) as pool:
            together = list(pool.map(lambda p: srv.generate(p, 160)["output_ids"], prompts))
        log = srv.log.read_text(errors="replace")
        stats = srv.stats()
    retractions = re.findall(r"(?:KV cache pool is full\. Retract requests|Testing retraction)\. #retracted_reqs: (\d+)", log)
    print(f"retractions: {len(retractions)}, requests retracted: {sum(map(int, retractions))}")
    assert sum(map(int, retractions)) > 0, "no request was retracted"
    assert together == solo
    full = PATTERN.count("F")
    assert stats["indexer_runs"] == full * stats["forwards"]
    assert stats["indexer_skips"] == (len(PATTERN) - full) * stats["forwards"]


@pytest.mark.engine
def test_flush_and_abort_in_the_middle_of_load(server, probe_answers):
    """Eight requests run; mid-way /flush_cache is refused (SGLang never flushes a busy
    server) and three of them are cancelled through /abort_request. The cancelled ones end
    with finish_reason abort, the others get their solo answers, the flush succeeds once idle,
    and the counters still match the schedule."""
    import concurrent.futures as cf
    import time

    prompts = [prompt(400 + i, 80 + 20 * i) for i in range(8)]
    doomed = {1, 4, 6}
    server.flush_cache()
    solo = {i: server.generate(prompts[i], 24)["output_ids"] for i in range(8) if i not in doomed}

    def client(i):
        n = 800 if i in doomed else 24  # the cancelled ones would still be running
        return http(server, "/generate", gen(prompts[i], max_new_tokens=n, ignore_eos=True) | {"rid": f"load-{i}"})

    with cf.ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(client, i) for i in range(8)]
        time.sleep(1.5)
        flush_status, flush_text = http(server, "/flush_cache", {})
        for i in doomed:
            assert http(server, "/abort_request", {"rid": f"load-{i}"})[0] == 200
        got = [f.result() for f in futs]
    print("flush under load:", flush_status, flush_text.strip()[:80])
    assert flush_status == 400
    for i, (status, text) in enumerate(got):
        if i in doomed:
            reason = json.loads(text)["meta_info"]["finish_reason"] if status == 200 else None
            assert (reason or {}).get("type") == "abort" or "abort" in text.lower(), (i, status, text[:300])
        else:
            assert status == 200 and json.loads(text)["output_ids"] == solo[i], (i, status, text[:300])
    server.flush_cache(wait_s=60)
    assert_still_serving(server, probe_answers)
    stats = server.stats()
    full = PATTERN.count("F")
    assert stats["indexer_runs"] == full * stats["forwards"]
    assert stats["indexer_skips"] == (len(PATTERN) - full) * stats["forwards"]


@pytest.mark.engine
def test_soak_mixed_agentic_traffic(server, probe_answers):
    """A short `make soak` on this server: sessions with aborts, hang-ups, bad requests and
    flushes; nothing unexpected, every kept answer equals its solo rerun. 20 s of load, longer
    (at most 120 s) on a machine too slow to keep 10 answers in 20 s."""
    from sglang_indexcache.soak import Soak, counters_hold

    summary = Soak(server, vocab=VOCAB, context=1024, seed=1, sessions=4).run(20, max_checked=30, min_ok=10, max_s=120)
    print(json.dumps(summary))
    assert summary["unexpected"] == [] and summary["healthy_after"]
    assert summary["outcomes"].get("ok", 0) >= 10 and summary["outcomes"].get("bad refused", 0) >= 1
    assert summary["answers_checked"] >= 10 and summary["answers_differing"] == 0
    assert counters_hold(server.stats(), PATTERN)
    assert_still_serving(server, probe_answers)


@pytest.mark.engine
def test_a_killed_scheduler_makes_the_launcher_exit_nonzero(models, tmp_path):
    """SIGKILL on the scheduler process (no Python handler runs): the launcher must exit
    non-zero promptly, so an orchestrator restarts it, instead of serving with no backend.
    SGLang 0.5.23's SubprocessWatchdog (polls every second) is what catches it."""
    import os
    import signal
    import time

    import psutil

    srv = Server(models["deepseek-tiny"], [*ARGS, "--skip-server-warmup"], log=tmp_path / "kill.log")
    with srv:
        kids = psutil.Process(srv.proc.pid).children(recursive=True)
        sched = [p for p in kids if "sglang::scheduler" in " ".join(p.cmdline()) or p.name().startswith("sglang::sch")]
        assert sched, [(p.pid, p.name(), p.cmdline()[:3]) for p in kids]
        os.kill(sched[0].pid, signal.SIGKILL)
        t0 = time.monotonic()
        code = srv.proc.wait(timeout=60)
        took = time.monotonic() - t0
        print(f"launcher exited with {code} {took:.1f} s after the scheduler was killed")
        assert code != 0 and took < 30
    assert "crashed" in srv.log.read_text(errors="replace")
