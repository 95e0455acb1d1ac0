"""The forward-pass-metrics recorder (`bench/fpm.py`) against SGLang's own publisher thread."""

from __future__ import annotations

import time

from sglang_indexcache.bench import fpm


def test_recorder_hears_sglangs_publisher_and_splits_prefill_from_decode(tmp_path):
    from sglang.srt.observability.forward_pass_metrics import (
        ForwardPassMetrics, ScheduledRequestMetrics, _FpmPublisherThread)

    base = f"ipc://{tmp_path}/fpm"
    assert fpm.endpoint_args(base) == ["--enable-forward-pass-metrics", "--forward-pass-metrics-ipc-name", base]
    pub = _FpmPublisherThread(base + ".0", worker_id="w", dp_rank=0)  # as SGLang's scheduler binds it
    rec = fpm.Recorder(base + ".0")
    try:
        time.sleep(0.5)  # a ZMQ subscriber hears only what is published after it joined
        sent = [  # (span s, prefill requests, new tokens, cached tokens, decode requests)
            (0.120, 1, 4096, 98304, 0), (0.004, 0, 0, 0, 16), (0.005, 0, 0, 0, 16),
            (0.150, 2, 6000, 150000, 14), (0.0, 0, 0, 0, 0)]  # the last: an idle heartbeat
        for span, n, tok, kv, dec in sent:
            pub.publish(ForwardPassMetrics(wall_time=span, scheduled_requests=ScheduledRequestMetrics(
                num_prefill_requests=n, sum_prefill_tokens=tok, sum_prefill_kv_tokens=kv, num_decode_requests=dec)))
        deadline = time.monotonic() + 10
        while len(rec.rows) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rec.close()
        pub.shutdown()
    assert [r["wall_time"] for r in rec.rows] == [s[0] for s in sent]
    g = fpm.summarize(rec.rows)
    assert g["messages"] == 5 and g["dropped"] == 0
    assert round(g["gpu_s"], 6) == 0.279
    assert {k: g["prefill"][k] for k in ("forwards", "prefill_tokens", "prefill_kv_tokens", "decode_requests")} == {
        "forwards": 2, "prefill_tokens": 10096, "prefill_kv_tokens": 248304, "decode_requests": 14}
    assert round(g["prefill"]["gpu_s"], 6) == 0.27 and round(g["prefill"]["median_ms"], 3) == 135.0
    assert (g["decode"]["forwards"], round(g["decode"]["gpu_s"], 6), g["decode"]["decode_requests"]) == (2, 0.009, 32)
    # a lost message shows as a gap in the publisher's counter
    assert fpm.summarize([rec.rows[0], *rec.rows[2:]])["dropped"] == 1
    assert fpm.summarize([]) is None


def test_forward_pass_metrics_are_refused_on_cpu_before_any_work(models, tmp_path):
    """SGLang 0.5.23's DeviceTimer takes torch.cuda's stream: a CPU server with the flag dies at
    its first forward ("Found no NVIDIA driver"), so the benchmark refuses it up front."""
    import pytest

    from sglang_indexcache.bench.__main__ import main

    with pytest.raises(SystemExit, match="--forward-pass-metrics needs CUDA"):
        main(["agentic", "--out", str(tmp_path / "out"), "--device", "cpu", "--model-path", models["deepseek-tiny"],
              "--pattern", "FSSFSS", "--configs", "c", "--forward-pass-metrics"])
    assert not (tmp_path / "out" / "results.json").exists()


def test_servers_publish_where_the_recorder_listens():
    """The flags go on the server's command line; the recorder joins BASE.0 (SGLang's dp rank 0)."""
    from sglang_indexcache.bench import agentic

    base = agentic.fpm_base("c-s1")
    assert base.startswith("ipc://") and base.endswith("-c-s1") and len(base) - len("ipc://") + 2 < 107


def test_the_agentic_table_shows_each_runs_gpu_spans():
    from sglang_indexcache.bench import agentic_report

    def run(pre, dec, dur):
        return {"duration_s": dur, "gpu_spans": {"gpu_s": pre + dec, "dropped": 0, "messages": 9,
                                                 "prefill": {"gpu_s": pre}, "decode": {"gpu_s": dec}}}

    level = {"ttft_median_s": 0.7, "ttft_p90_s": 1.4, "ttft_long_median_s": 0.9, "tpot_median_ms": 6.0,
             "sessions_per_min": 17.0, "cache_hit_rate_pct": 92.8, "server": {}, "repeats": 2,
             "run_servers": [0, 1], "runs": [run(30.5, 12.25, 56.7), run(31.0, 12.0, 57.6)]}
    results = {"model": "m", "shape": "flash-12", "gpu": {"name": "H200"}, "trace": {"sessions": 16, "turns": [1]},
               "configs": {"c": {"label": "indexcache, FSSSFSSSFSSS", "levels": {"16": level}}}}
    table = agentic_report.agentic_table(results)
    assert "c GPU spans, s (prefill + decode-only of the run's length): 30.5 + 12.2 of 56.7, 31.0 + 12.0 of 57.6" in table


def test_a_message_the_recorder_cannot_read_is_an_error_not_an_empty_level(tmp_path):
    import pytest
    import zmq

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/bad.0")
    rec = fpm.Recorder(f"ipc://{tmp_path}/bad.0")
    try:
        time.sleep(0.5)
        pub.send_multipart((b"", (0).to_bytes(8, "big"), b"not msgpack of ForwardPassMetrics"))
        deadline = time.monotonic() + 10
        while rec.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="forward pass metrics from ipc://"):
            rec.check()
        assert rec.rows == []
    finally:
        rec.close()
        pub.close(linger=0)
        ctx.term()


def _row(counter, span, prefill=0, decode=0):
    return {"counter_id": counter, "wall_time": span,
            "scheduled_requests": {"num_prefill_requests": prefill, "sum_prefill_tokens": 1000 * prefill,
                                   "sum_prefill_kv_tokens": 0, "num_decode_requests": decode}}


def test_spans_split_decode_into_per_token_time_and_the_largest_batchs_percentiles(tmp_path, capsys):
    import gzip
    import json

    from sglang_indexcache.bench.__main__ import main

    # 11 forwards at batch 4 with spans 2.0 .. 3.0 ms, 2 at batch 2 (4 ms each), one prefill, one heartbeat
    rows = [_row(i, (2.0 + i / 10) / 1e3, decode=4) for i in range(11)]
    rows += [_row(11, 0.004, decode=2), _row(12, 0.004, decode=2), _row(13, 0.100, prefill=1, decode=3), _row(14, 0.0)]
    g = fpm.spans(rows)
    d = g["decode"]
    assert (d["forwards"], d["decode_requests"]) == (13, 48)
    assert abs(d["gpu_s"] - (0.0275 + 0.008)) < 1e-12
    assert abs(d["ms_per_token"] - 35.5 / 48) < 1e-9
    fb = d["full_batch"]
    assert (fb["batch"], fb["forwards"]) == (4, 11)
    assert (round(fb["p10_ms"], 9), round(fb["median_ms"], 9), round(fb["p90_ms"], 9)) == (2.1, 2.5, 2.9)
    assert g["prefill"]["forwards"] == 1 and fpm.spans([]) is None

    path = tmp_path / "c-c16-fpm.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    assert main(["spans", str(path)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "0.10 (   1)" in line and "0.04 (   13)" in line and "0.740" in line and "bs 4: 2.10 / 2.50 / 2.90  -" in line


def test_spans_fit_the_largest_batchs_forwards_against_the_context_they_read():
    """A forward of the largest batch costs fixed + per-token x context: the fit finds both, so
    servers whose batches held different contexts compare at equal context; without the
    context field (older messages) there is no fit and the table says '-'."""
    def row(i, kv):
        r = _row(i, (1.5 + 0.5 * kv / 1e6) / 1e3, decode=16)
        r["scheduled_requests"]["sum_decode_kv_tokens"] = kv
        return r

    fb = fpm.spans([row(i, 200_000 * (i + 1)) for i in range(9)] + [row(9, 4_000_000)])["decode"]["full_batch"]
    assert abs(fb["fixed_ms"] - 1.5) < 1e-9 and abs(fb["ms_per_mtoken"] - 0.5) < 1e-9
    assert fb["context_median"] == 1_100_000
    assert "fixed_ms" not in fpm.spans([_row(i, 0.002 + i / 1e4, decode=4) for i in range(5)])["decode"]["full_batch"]


def test_host_gap_is_the_loop_period_beyond_the_gpu_span_of_consecutive_full_batch_steps():
    """SGLang publishes once per loop step: the arrival interval of two consecutive decode steps
    at the largest batch, minus the later step's span, is time the GPU waited for the host. Pairs
    broken by a prefill, a smaller batch, a dropped message or an idle wait are left out."""
    rows, t = [], 100.0
    for i, (span_ms, extra_ms) in enumerate([(2.0, 0.0), (2.0, 0.5), (3.0, 1.0), (2.5, 0.0), (2.0, 2.0)]):
        t += (span_ms + extra_ms) / 1e3
        rows.append({**_row(i, span_ms / 1e3, decode=16), "received": t})
    gaps = fpm.host_gaps(rows, 16)
    assert [round(g, 9) for g in gaps] == [0.5, 1.0, 0.0, 2.0]
    fb = fpm.spans(rows)["decode"]["full_batch"]
    assert fb["gap_pairs"] == 4 and round(fb["gap_median_ms"], 9) == 0.75 and round(fb["gap_p90_ms"], 9) == 1.7
    broken = [
        rows[0],
        {**_row(1, 0.1, prefill=1, decode=16), "received": rows[0]["received"] + 0.1005},  # a prefill step
        {**_row(2, 0.002, decode=16), "received": rows[0]["received"] + 0.1030},  # after the prefill
        {**_row(4, 0.002, decode=16), "received": rows[0]["received"] + 0.1055},  # counter 3 dropped
        {**_row(5, 0.002, decode=8), "received": rows[0]["received"] + 0.1080},  # a smaller batch
        {**_row(6, 0.002, decode=16), "received": rows[0]["received"] + 0.1105},  # after the smaller batch
        {**_row(7, 0.002, decode=16), "received": rows[0]["received"] + 0.3},  # the server waited for work
    ]
    assert fpm.host_gaps(broken, 16) == []
    assert fpm.host_gaps([{k: v for k, v in r.items() if k != "received"} for r in rows], 16) == []


def test_spans_of_a_committed_replay_agree_with_the_summary_the_device_wrote():
    """Session 30's (d) server: `bench spans` on its per-forward file against results.json's
    gpu_spans, computed on the device from the messages as they arrived."""
    import gzip
    import json
    from pathlib import Path

    run = Path(__file__).resolve().parents[1] / "benchmarks/results/h200-2026-12-04-session30/fl-d1"
    with gzip.open(run / "d-c16-fpm.jsonl.gz", "rt") as fh:
        g = fpm.spans([json.loads(line) for line in fh])
    device = json.loads((run / "results.json").read_text())["configs"]["d"]["levels"]["16"]["gpu_spans"]
    for part in ("prefill", "decode"):
        for k in ("forwards", "prefill_tokens", "decode_requests"):
            assert g[part][k] == device[part][k]
        assert abs(g[part]["gpu_s"] - device[part]["gpu_s"]) < 1e-9
    assert g["decode"]["full_batch"]["batch"] == 16 and g["dropped"] == device["dropped"] == 0


def _replay(factor: float, seed: int, batch: int = 16) -> list:
    """A replay whose forwards follow one cost model times `factor`, with its own schedule:
    prefill-only forwards of 64 to 8,192 new tokens on 0 to 128K cached, decode-only ones at
    `batch` on 0.2M to 2M context, a few smaller batches, mixed forwards and idle heartbeats."""
    import random

    rnd = random.Random(seed)
    rows = []
    for i in range(400):
        kind = rnd.random()
        if kind < 0.2:
            n, kv = rnd.randint(64, 8192), rnd.randint(0, 131072)
            span = 0.02 + 1e-5 * n + 1.2e-5 * n * (kv + n / 2) / 1e6
            sched = {"num_prefill_requests": 1, "sum_prefill_tokens": n, "sum_prefill_kv_tokens": kv,
                     "num_decode_requests": 0, "sum_decode_kv_tokens": 0}
        elif kind < 0.9:
            ctx = rnd.randint(200_000, 2_000_000)
            span = 2.3e-3 + 4e-4 * ctx / 1e6
            sched = {"num_prefill_requests": 0, "sum_prefill_tokens": 0, "sum_prefill_kv_tokens": 0,
                     "num_decode_requests": batch, "sum_decode_kv_tokens": ctx}
        elif kind < 0.95:  # a smaller batch and a mixed forward: left out of both fits
            span, sched = 1.0, {"num_prefill_requests": 0, "sum_prefill_tokens": 0, "sum_prefill_kv_tokens": 0,
                                "num_decode_requests": batch // 2, "sum_decode_kv_tokens": 10}
            if rnd.random() < 0.5:
                sched = {**sched, "num_prefill_requests": 1, "sum_prefill_tokens": 100}
        else:
            span, sched = 0.0, {"num_prefill_requests": 0, "sum_prefill_tokens": 0, "sum_prefill_kv_tokens": 0,
                                "num_decode_requests": 0, "sum_decode_kv_tokens": 0}
        rows.append({"counter_id": i, "wall_time": span * (factor if span < 1.0 else 1.0), "scheduled_requests": sched})
    return rows


def test_equal_work_ratios_tell_a_slower_server_from_one_that_was_given_more_work():
    """Session 33: replays of one trace differed in how the scheduler cut them (187 to 219
    prefill forwards, 783K to 926K median decode context), so raw GPU seconds compare schedules
    as much as servers. Against one model fitted over all replays, a server 10 % slower at every
    forward shows 1.10 times the others' ratio whatever its schedule; a replay with no partner at
    its batch size, or alone, gets none."""
    base, slow, other = _replay(1.0, 1), _replay(1.10, 2), _replay(1.0, 3)
    assert sum(r["wall_time"] for r in slow) != 1.1 * sum(r["wall_time"] for r in base)  # schedules differ
    ra, rb, rc = fpm.work_ratios([base, slow, other])
    for part in ("prefill", "decode"):
        assert abs(rb[part] / ra[part] - 1.10) < 0.01 and abs(rc[part] / ra[part] - 1.0) < 0.01
        assert abs((ra[part] + rb[part] + rc[part]) / 3 - 1.0) < 0.02  # the group is the yardstick
    # at batch 8 the decode model is fitted only among batch-8 replays: none here, so no ratio
    lone = fpm.work_ratios([base, slow, _replay(1.0, 4, batch=8)])
    assert lone[2]["decode"] is None and lone[2]["prefill"] is not None and lone[0]["decode"] is not None
    assert fpm.work_ratios([base]) == [{"prefill": None, "decode": None}]


def test_spans_table_gives_each_file_its_ratio_at_equal_work(tmp_path):
    import gzip
    import json

    paths = []
    for name, factor, seed in (("d", 1.0, 1), ("c", 1.10, 2)):
        path = tmp_path / f"{name}-c16-fpm.jsonl.gz"
        with gzip.open(path, "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in _replay(factor, seed))
        paths.append(str(path))
    lines = fpm.spans_table(paths).splitlines()
    assert "at equal work: prefill / decode" in lines[0]
    (pd, dd), (pc, dc) = [[float(x) for x in line.split(paths[i])[0].split()[-3::2]] for i, line in enumerate(lines[1:])]
    assert abs(pc / pd - 1.10) < 0.01 and abs(dc / dd - 1.10) < 0.01
