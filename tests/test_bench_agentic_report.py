"""The agentic report's ratios (`bench/agentic_report.py`): speedups over (a) all Full and (d)
native sharing, levels of other sessions paired turn for turn rather than divided, and the
turn-for-turn pairing itself. The rest of the agentic workload: `test_bench_agentic.py`."""

from __future__ import annotations

import pytest

from sglang_indexcache.bench import agentic_report


def test_agentic_ratios_are_speedups_over_dsa_and_native_sharing():
    def level(ttft_long, spm):
        return {"levels": {"1": {"ttft_long_median_s": ttft_long, "sessions_per_min": spm}}, "label": "x"}

    results = {"concurrency": [1], "configs": {"a": level(2.0, 1.0), "d": level(1.25, 1.5), "c": level(1.0, 1.6)}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_a"]["1"]["c"]["ttft_long_median_s"] == pytest.approx(2.0)
    assert r["over_a"]["1"]["c"]["sessions_per_min"] == pytest.approx(1.6)
    assert r["over_d"]["1"]["c"]["ttft_long_median_s"] == pytest.approx(1.25)


def test_levels_of_other_sessions_are_not_divided_only_paired(tmp_path):
    """Session 21 merged (e), one session, into a file where (a) replayed two: its >= 96K median
    was over session 0's turns, (a)'s over both sessions', and the first report divided them
    (1.83 where turn for turn gave 1.80). Such levels give turn-for-turn ratios only."""
    def rows(session, ttfts):
        return [{"session": session, "turn": t, "context": 100000, "ttft_s": x, "error": None} for t, x in enumerate(ttfts)]

    a_rows = rows(0, [1.0, 1.0]) + rows(1, [4.0, 4.0])
    results = {"concurrency": [1], "configs": {
        "a": {"label": "a", "levels": {"1": {"sessions": 2, "ttft_median_s": 2.5, "ttft_p90_s": 4.0,
                                             "ttft_long_median_s": 2.5, "sessions_per_min": 1.0, "turns": a_rows}}},
        "e": {"label": "e", "levels": {"1": {"sessions": 1, "ttft_median_s": 0.5, "ttft_p90_s": 0.5,
                                             "ttft_long_median_s": 0.5, "sessions_per_min": 3.0,
                                             "turns": rows(0, [0.5, 0.5])}}},
        "m": {"label": "m", "levels": {"1": {"sessions": 2, "ttft_median_s": 1.25, "ttft_p90_s": 2.0,
                                             "ttft_long_median_s": 1.25, "sessions_per_min": 2.0,
                                             "turns": rows(0, [0.5, 0.5]) + rows(1, [2.0, 2.0])}}}}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_a"]["1"]["e"] == {} and r["sessions_over_a"]["1"] == {"e": [1, 2]}
    assert r["paired_over_a"]["1"]["e"]["median_long"] == pytest.approx(2.0)  # session 0's turns only
    assert r["over_a"]["1"]["m"]["ttft_long_median_s"] == pytest.approx(2.0)  # same sessions: divided
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "e over a: not divided, 1 session(s) against 2 (other turns); turn for turn:" in table
    assert "e over a, turn for turn: median 2.000 (2 turns), >=96K 2.000 (2)" in table
    assert "m over a: ttft_long_median_s 2.000" in table
    for entry in results["configs"].values():  # the plot draws (e)'s bar from its turn-for-turn ratio
        entry["levels"]["1"]["ttft_by_context"] = {"98304": {"median_s": 1.0, "p90_s": 1.5, "n": 2}}
    agentic_report.agentic_plot({**results, "ratios": r}, tmp_path / "mixed.png")
    assert (tmp_path / "mixed.png").stat().st_size > 10_000


def test_turn_for_turn_ratios_pair_the_same_turn_of_the_same_session():
    """Each turn's TTFT against the same turn on the reference's server (medians over repeated
    runs), >= 96K turns apart; a turn whose context differs between the servers is not paired."""
    def rows(ttfts, run=None, contexts=(8000, 60000, 100000, 120000)):
        out = [{"session": 0, "turn": t, "context": c, "ttft_s": x, "error": None}
               for t, (c, x) in enumerate(zip(contexts, ttfts))]
        return [{**r, "run": run} for r in out] if run is not None else out

    a = rows([0.2, 0.4, 0.8, 1.0])
    c = rows([0.1, 0.4, 0.4, 0.9], run=0) + rows([0.3, 0.4, 0.2, 1.1], run=1)  # medians 0.2 0.4 0.3 1.0
    p = agentic_report.paired_turns(a, c)
    assert p["turns"] == 4 and p["unpaired"] == 0 and p["long_turns"] == 2
    assert p["median"] == pytest.approx(1.0)  # ratios 1, 1, 8/3, 1
    assert p["median_long"] == pytest.approx((0.8 / 0.3 + 1.0) / 2)
    assert p["total"] == pytest.approx(2.4 / 1.9)
    other = rows([0.2, 0.4, 0.8, 1.0], contexts=(8000, 60000, 100000, 125000))  # a longer reply before it
    assert agentic_report.paired_turns(a, other)["unpaired"] == 1
    failed = [{**r, "error": "timeout"} if r["turn"] == 3 else r for r in a]
    assert agentic_report.paired_turns(failed, a)["turns"] == 3
    assert agentic_report.paired_turns(a, []) == {}

    results = {"concurrency": [1], "configs": {
        "a": {"label": "a", "levels": {"1": {"ttft_median_s": 0.6, "ttft_p90_s": 1.0, "sessions_per_min": 1.0, "turns": a}}},
        "c": {"label": "c", "levels": {"1": {"ttft_median_s": 0.35, "ttft_p90_s": 0.9, "sessions_per_min": 1.2,
                                             "turns": c}}}}}
    r = agentic_report.agentic_ratios(results)
    assert r["paired_over_a"]["1"]["c"]["median"] == pytest.approx(1.0)
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "c over a, turn for turn: median 1.000 (4 turns), >=96K 1.833 (2), total TTFT 1.263" in table
    assert p["tpot_median"] is None and "TPOT median" not in table  # rows without decode times


def test_turn_for_turn_tpot_is_each_turns_decode_time_per_token_after_the_first():
    """bench_serving's TPOT of one request, (its inter-token latencies summed) / (tokens - 1), paired
    turn for turn (medians over repeated runs); a one-token reply or a failed turn has none."""
    def rows(decode, run=None, tokens=201):
        out = [{"session": 0, "turn": t, "context": 1000 * (t + 1), "ttft_s": 0.1, "error": None,
                "decode_s": d, "output_tokens": tokens if t else 1} for t, d in enumerate(decode)]
        return [{**r, "run": run} for r in out] if run is not None else out

    d = rows([0.0, 1.0, 1.2, 2.0])  # TPOT 5, 6, 10 ms after the first turn's single token
    c = rows([0.0, 1.0, 1.0, 1.6], run=0) + rows([0.0, 1.2, 1.0, 2.0], run=1)  # medians 1.1, 1.0, 1.8 s
    p = agentic_report.paired_turns(d, c)
    assert p["turns"] == 4 and p["tpot_turns"] == 3
    assert p["tpot_median"] == pytest.approx(2.0 / 1.8)  # ratios 1.0/1.1, 1.2/1.0, 2.0/1.8
    assert p["tpot_total"] == pytest.approx(4.2 / 3.9)
    results = {"concurrency": [16], "configs": {
        key: {"label": key, "levels": {"16": {"ttft_median_s": 0.1, "ttft_p90_s": 0.1, "sessions_per_min": 1.0,
                                              "turns": t}}} for key, t in (("d", d), ("c", c))}}
    table = agentic_report.agentic_table({**results, "ratios": agentic_report.agentic_ratios(results)})
    assert "c over d, turn for turn: median 1.000 (4 turns), >=96K none (0), total TTFT 1.000; " \
           "TPOT median 1.111 (3 turns), total 1.077" in table
