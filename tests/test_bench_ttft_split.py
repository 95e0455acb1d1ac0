"""`bench split`: a turn's TTFT split into the scheduler's part and the host time outside it
(bench/ttft_split.py)."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from sglang_indexcache.bench import ttft_split

# one `request.finished` line as SGLang 0.5.23 prints it with --log-requests-format json
# (recorded from a CPU server of the tiny model, `obj` cut short)
FINISHED = ('[2026-12-05 07:06:26] {"timestamp": "2026-12-05T07:06:26.588647", "event": "request.finished", '
            '"rid": "307b", "obj": {"rid": "307b", "stream": true}, "out": {"meta_info": {"id": "307b", '
            '"finish_reason": {"type": "length", "length": 8}, "prompt_tokens": 255, "forward_entry_time": '
            '1796454386.2707613, "prefill_finished_time": 1796454386.4798605, "queue_time": 0.0004234609987179283, '
            '"completion_tokens": 8, "cached_tokens": 0, "e2e_latency": 0.31987314999787486, "request_received_ts": '
            '1796454386.267454, "first_token_latency": 0.21413202400071896, "api_server_dispatch_finish_ts": '
            '1796454386.269408, "response_sent_to_client_ts": 1796454386.482095, "request_finished_ts": '
            '1796454386.5873272}}}')
RECEIVED = ('[2026-12-05 07:06:26] {"timestamp": "2026-12-05T07:06:26.268955", "event": "request.received", '
            '"rid": "307b", "obj": {"rid": "307b"}}')
HEALTH = FINISHED.replace('"rid": "307b"', '"rid": "HEALTH_CHECK_1"').replace('"prompt_tokens": 255', '"prompt_tokens": 1')


def test_a_turn_splits_into_the_schedulers_part_and_the_rest():
    # client: TTFT 0.5 s, first to last token 2.0 s; server: queued 0.1 s, forward (prefill and
    # decode) 2.2 s -> 0.2 s of the e2e 2.5 s outside the scheduler, 0.3 s of the TTFT inside
    sched, outside = ttft_split.split(0.5, 2.0, 0.1, 2.2)
    assert outside == pytest.approx(0.2) and sched == pytest.approx(0.3)
    assert sched + outside == pytest.approx(0.5)


def test_the_request_log_gives_stages_that_add_up_to_the_clients_ttft():
    done = ttft_split.finished_requests("\n".join([RECEIVED, FINISHED, HEALTH, "[x] not json {", ""]))
    assert list(done) == [255]  # health checks and other events left out
    st = ttft_split.stages(done[255], 0.220)
    assert list(st) == list(ttft_split.STAGES)
    assert st["tokenize"] == pytest.approx(1796454386.269408 - 1796454386.267454)
    assert st["queue"] == pytest.approx(0.0004234609987179283)
    assert st["prefill"] == pytest.approx(1796454386.4798605 - 1796454386.2707613)
    assert st["client"] == pytest.approx(0.220 - 0.21413202400071896)
    # the five server stages are its own TTFT (wall-clock stamps near 1.8e9 s: float64 to ~1e-6 s)
    assert sum(st.values()) == pytest.approx(0.220, abs=1e-6)
    assert all(v >= 0 for v in st.values()), st
    meta = dict(done[255])
    del meta["api_server_dispatch_finish_ts"]  # an older server: no stages, not wrong ones
    assert ttft_split.stages(meta, 0.22) is None


def _rows():
    """Four turns: two short, two at >= 96K; the last failed."""
    return [
        {"context": 10_000, "ttft_s": 0.30, "decode_s": 1.0, "server_queue_s": 0.05, "server_forward_s": 1.15, "error": None},
        {"context": 20_000, "ttft_s": 0.40, "decode_s": 1.0, "server_queue_s": 0.10, "server_forward_s": 1.10, "error": None},
        {"context": 100_000, "ttft_s": 0.90, "decode_s": 1.0, "server_queue_s": 0.10, "server_forward_s": 1.20, "error": None},
        {"context": 120_000, "ttft_s": 0.0, "decode_s": 0.0, "server_queue_s": None, "server_forward_s": None, "error": "x"},
    ]


def test_rows_get_their_split_and_the_level_its_medians():
    rows = ttft_split.annotate(_rows())
    assert [r["outside_s"] for r in rows[:3]] == pytest.approx([0.10, 0.20, 0.60])
    assert [r["sched_ttft_s"] for r in rows[:3]] == pytest.approx([0.20, 0.20, 0.30])
    assert rows[3]["outside_s"] is None and rows[3]["sched_ttft_s"] is None
    s = ttft_split.summary(rows)
    assert s["outside_median_s"] == pytest.approx(0.20) and s["outside_long_median_s"] == pytest.approx(0.60)
    assert s["sched_ttft_median_s"] == pytest.approx(0.20) and s["sched_ttft_long_median_s"] == pytest.approx(0.30)
    assert s["parts_turns"] == 0 and s["part_queue_mean_s"] is None  # no request log: no stages


def test_stages_pair_by_prompt_length_and_average_per_stage():
    rows = _rows()
    line = FINISHED.replace('"prompt_tokens": 255', '"prompt_tokens": 100000')
    rows = ttft_split.annotate(rows, "\n".join([FINISHED, line]))
    assert "stages" not in rows[0] and rows[2]["stages"]["client"] == pytest.approx(0.90 - 0.21413202400071896)
    s = ttft_split.summary(rows)
    assert s["parts_turns"] == 1
    assert sum(s[f"part_{k}_long_mean_s"] for k in ttft_split.STAGES) == pytest.approx(0.90)
    assert "tokenize 0.002 (0.002)" in ttft_split.part_line(s)


def test_rank_correlation_orders_and_ties():
    assert ttft_split.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ttft_split.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert ttft_split.ranks([5, 1, 5, 2]) == [2.5, 0.0, 2.5, 1.0]
    assert math.isnan(ttft_split.spearman([1, 1, 1], [1, 2, 3]))


def test_the_table_reads_a_replay_and_its_server_log(tmp_path):
    """Two replays of bench_serving's shape, each beside its server's log: one per config."""
    for tag, extra in (("c", 0.0), ("d", 0.1)):
        result = {"input_lens": [10_000, 100_000], "ttfts": [0.3 + extra, 0.9 + extra], "itls": [[0.5, 0.5], [0.5, 0.5]],
                  "errors": ["", ""]}
        with gzip.open(tmp_path / f"{tag}-c16.jsonl.gz", "wt") as fh:
            fh.write(json.dumps(result))
        (tmp_path / f"{tag}-server.log").write_text(
            "ReqTimeStats(rid=a, input_len=10000, cached_input_len=0, output_len=3, attempts=0, type=unified): "
            f"queue_duration=50.00ms, forward_duration={1150 + 1000 * extra:.2f}ms, entry_time=1.0\n"
            "ReqTimeStats(rid=b, input_len=100000, cached_input_len=0, output_len=3, attempts=0, type=unified): "
            f"queue_duration=100.00ms, forward_duration={1200 + 1000 * extra:.2f}ms, entry_time=2.0\n")
    assert ttft_split.server_log(tmp_path / "c-c16.jsonl.gz") == tmp_path / "c-server.log"
    with pytest.raises(FileNotFoundError, match="no x-server.log"):
        ttft_split.server_log(tmp_path / "x-c16.jsonl.gz")
    out = ttft_split.table([tmp_path / "c-c16.jsonl.gz", tmp_path / "d-c16.jsonl.gz"])
    assert "2/2" in out
    # (d) spent its extra 0.1 s in the scheduler (its forward): 0.3 over 0.4 at >= 96K
    assert "c (1 replays)" in out and "sched_ttft_long_median_s 1.333" in out, out
