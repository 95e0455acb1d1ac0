"""The committed H100 agentic results reproduce the figures the README and the issue notes quote
(the H200 ones are in `test_results.py`, `test_results_flash.py` and `test_results_glm.py`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from test_results import RATIO_FIGS, c_over_d, fpm_rows, replay_rows, row_figures

from sglang_indexcache.bench import agentic_report, common, fpm, pyspy, ttft_split

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def servers(folder: Path, prefix: str, order: tuple, concurrency: str, trace: str,
            gpu: str = "NVIDIA H100 80GB HBM3") -> tuple:
    """Each server's configuration key (joined in order), entry and level at `concurrency` in a
    session whose servers ran one configuration each (folders `PREFIX-NAME`), after checking that
    all ran flash-12 on the trace of sha256 `trace...` on `gpu` (an H100 unless given)."""
    per = {n: json.loads((folder / f"{prefix}-{n}" / "results.json").read_text()) for n in order}
    assert {(r["shape"], r["trace"]["sha256"][:8], r["gpu"]["name"]) for r in per.values()} == {
        ("flash-12", trace, gpu)}
    keys = "".join(next(iter(r["configs"])) for r in per.values())
    entry = {n: next(iter(r["configs"].values())) for n, r in per.items()}
    return keys, entry, {n: e["levels"][concurrency] for n, e in entry.items()}


def servers_32k(folder: Path, order: tuple) -> tuple:
    """`servers` at concurrency 16 on the 32K trace (folders `fl32-NAME`), every round of the 16
    sessions run, whose histories need 489,962 tokens."""
    keys, entry, level = servers(folder, "fl32", order, "16", "a674dde8")
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"], lv["kv_working_set_tokens"])
            for lv in level.values()} == {(16, 195, 0, 489962)}
    return keys, entry, level


def servers_conc1(folder: Path, order: tuple) -> tuple:
    """`servers` at concurrency 1 on the 128K trace (folders `fl-conc1-NAME`): the H100's pool
    at fraction 0.3 holds the two sessions' histories, every turn answered."""
    keys, entry, level = servers(folder, "fl-conc1", order, "1", "821ea80f")
    assert {entry[n]["kv_pool_tokens"] for n in order} == {574336}
    assert {(lv["sessions"], lv["rounds"], lv["failed_rounds"], lv["kv_working_set_tokens"], lv["cache_hit_rate_pct"])
            for lv in level.values()} == {(2, 46, 0, 129278, 92.33)}
    return keys, entry, level


def decode_only(rows: list, batch: int | None = 1) -> list:
    """(ms, context tokens) of each forward that decoded `batch` requests (one unless given; None:
    any number) and prefilled none."""
    return [(r["wall_time"] * 1000, q["sum_decode_kv_tokens"]) for r in rows
            if (n := (q := r["scheduled_requests"])["num_decode_requests"]) and (batch is None or n == batch)
            and not q["num_prefill_requests"]]


# The upstream calls the package's frames wrap (a `super()` call or the hooked original): a `dsa`
# server runs them too, so samples inside them are not the package's own time. Under MTP the
# draft's layer runs through the layer hook untouched (`_around_decoder_layer`, session 42).
WRAPS = {"init_forward_metadata_out_graph": "DeepseekSparseAttnBackend.init_forward_metadata_out_graph",
         "init_forward_metadata": "DeepseekSparseAttnBackend.init_forward_metadata",
         "get_indexer_metadata": "DeepseekSparseAttnBackend.get_indexer_metadata",
         "_around_bcg_replay": "BreakableCudaGraphBackend.replay", "index_cache_layer": "DeepseekV2DecoderLayer.forward",
         "_around_decoder_layer": "DeepseekV2DecoderLayer.forward",
         "index_cache_extend_topk": "Indexer._get_topk_ragged", "_around_extend_topk": "Indexer._get_topk_ragged",
         # since session 43 the metrics thread, asleep between its once-a-second flushes
         "_flush_every": "Event.wait"}


def own_and_wrapped(path: Path) -> tuple:
    """A py-spy file's seconds with a frame of the package (`pyspy.calls_out`): outside the
    upstream calls it wraps (its own code, and samples py-spy read torn), and inside them."""
    calls = pyspy.calls_out(pyspy.read(path))
    wrapped = [k for k in calls if WRAPS.get(k.split(" (")[0].split(".")[-1]) == k.split(" -> ")[1].split(" (")[0]]
    inside = sum(calls[k] for k in wrapped)
    return round((sum(calls.values()) - inside) / pyspy.RATE_HZ, 2), round(inside / pyspy.RATE_HZ, 2)


def short_figures(level: dict) -> list:
    """TTFT median and p90 (s, 3 places), TPOT (ms) and sessions/min (2 places): a 32K trace has
    no >= 96K figure (`test_results.row_figures` with it)."""
    return [round(level[f], 3) for f in ("ttft_median_s", "ttft_p90_s")] \
        + [round(level["tpot_median_ms"], 2), round(level["sessions_per_min"], 2)]


def test_session37_c_d_balanced_at_16_on_a_32k_trace_reproduce_the_quoted_figures():
    """One H100, 2026-12-05 (session 37): flash-12 at concurrency 16 on a 32K trace, whose 16
    sessions fit the H100's pool (the 128K trace's do not: session 36), servers d c d c, then (a).
    Every history stays cached, so the split of each turn's TTFT by stage compares (c) and (d)
    where nothing is re-prefilled."""
    s37 = RESULTS / "h100-2026-12-05-session37"
    order = ("d1", "c1", "d2", "c2", "a1")
    keys, entry, level = servers_32k(s37, order)
    assert keys == "dcdca"
    # the pool holds every live history: (a) stores index keys for all 12 layers, so its is smaller
    assert [entry[n]["kv_pool_tokens"] for n in order] == [574336] * 4 + [524992]
    assert {lv["cache_hit_rate_pct"] for lv in level.values()} == {86.84}  # the same on all: none evicted
    figs = [short_figures(level[n]) for n in order]
    assert figs == [[0.379, 0.553, 4.24, 54.7], [0.352, 0.526, 3.42, 63.03], [0.396, 0.554, 3.67, 59.52],
                    [0.398, 0.509, 4.74, 51.71], [0.462, 0.632, 4.09, 52.85]]
    assert all(level[n]["ttft_long_median_s"] is None for n in order)  # no turn at >= 96K in a 32K trace

    # the merged table's ratios: (c) over (d), medians of two servers each, and against (a)
    ratios = agentic_report.agentic_ratios(json.loads((s37 / "fl32" / "results.json").read_text()))
    figs6 = RATIO_FIGS[2:]  # the >= 96K figures do not apply
    assert c_over_d(ratios, "16", figs6) == ([1.035, 1.07, 0.97, 1.005],
                                             [[0.953, 1.127], [1.051, 1.09], [0.775, 1.241], [0.869, 1.152]])
    assert [round(ratios["paired_over_d"]["16"]["c"][k], 3) for k in ("median", "total")] == [1.048, 1.045]
    assert [round(ratios["over_a"]["16"][k][f], 3) for k in "cd" for f in ("ttft_median_s", "sessions_per_min")] == [
        1.234, 1.086, 1.193, 1.081]

    # each turn's TTFT by stage: the host time outside the scheduler does not sort by configuration
    split = {}
    for n in order:
        rows = replay_rows(s37 / f"fl32-{n}")
        split[n] = ttft_split.summary(rows)
        assert sum(r["outside_s"] is not None for r in rows) == split[n]["parts_turns"] == 195
    assert [[round(split[n][k], 3) for k in ("outside_median_s", "sched_ttft_median_s")] for n in order] == [
        [0.14, 0.231], [0.127, 0.243], [0.163, 0.236], [0.161, 0.188], [0.168, 0.28]]
    assert [[round(split[n][f"part_{s}_mean_s"], 3) for s in ttft_split.STAGES] for n in order] == [
        [0.061, 0.028, 0.019, 0.22, 0.006, 0.038], [0.062, 0.031, 0.019, 0.228, 0.005, 0.026],
        [0.07, 0.034, 0.012, 0.219, 0.006, 0.04], [0.081, 0.031, 0.014, 0.188, 0.008, 0.029],
        [0.078, 0.034, 0.024, 0.265, 0.005, 0.03]]

    # GPU time at equal work among the four (c) and (d) servers: prefill within 1 %, decode
    # 0.895 to 1.147, c1 the fastest and c2 the slowest
    replay = {n: fpm_rows(s37 / f"fl32-{n}") for n in order}
    assert {(g["prefill"]["prefill_tokens"], g["decode"]["decode_requests"], g["dropped"])
            for g in map(fpm.spans, replay.values())} == {(462645, 38805, 0)}
    work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in order[:4]])]
    assert work == [(1.002, 1.018), (1.006, 0.895), (0.993, 0.946), (0.999, 1.147)]


def test_session38_three_servers_each_at_16_on_the_32k_trace_reproduce_the_quoted_figures():
    """One H100, 2026-12-05 (session 38): session 37's question with three servers per
    configuration, d c d c d c (`fl-stages.sh` with TRACE=trace-32k.json). The medians of three
    put (c) over (d) at or above issue 14's 0.99 on every figure, though each figure's pairings
    still span both sides of 1."""
    s38 = RESULTS / "h100-2026-12-05-session38"
    order = ("d1", "c1", "d2", "c2", "d3", "c3")
    keys, entry, level = servers_32k(s38, order)
    assert keys == "dcdcdc"
    assert {entry[n]["kv_pool_tokens"] for n in order} == {574336}
    assert [level[n]["cache_hit_rate_pct"] for n in order] == [86.81, 86.81, 86.84, 86.84, 86.81, 86.84]
    figs = [short_figures(level[n]) for n in order]
    assert figs == [[0.397, 0.582, 3.25, 66.05], [0.365, 0.51, 3.06, 69.15], [0.365, 0.478, 3.36, 68.05],
                    [0.371, 0.491, 3.11, 69.34], [0.368, 0.49, 3.18, 68.25], [0.342, 0.467, 3.29, 67.54]]

    ratios = agentic_report.agentic_ratios(json.loads((s38 / "fl32" / "results.json").read_text()))
    figs4 = RATIO_FIGS[2:]  # TTFT median, p90, TPOT, sessions/min; no turn at >= 96K
    over_d, pairings = c_over_d(ratios, "16", figs4)
    assert over_d == [1.007, 0.998, 1.043, 1.016] and min(over_d) >= 0.99
    assert pairings == [[0.984, 1.16], [0.938, 1.246], [0.967, 1.1], [0.99, 1.05]]
    paired = ratios["paired_over_d"]["16"]["c"]
    assert (paired["turns"], paired["unpaired"], round(paired["median"], 3), round(paired["total"], 3)) == (
        195, 0, 0.992, 0.992)

    split = {}
    for n in order:
        split[n] = ttft_split.summary(replay_rows(s38 / f"fl32-{n}"))
        assert split[n]["parts_turns"] == 195
    assert [[round(split[n][k], 3) for k in ("outside_median_s", "sched_ttft_median_s")] for n in order] == [
        [0.091, 0.243], [0.094, 0.245], [0.089, 0.248], [0.078, 0.248], [0.069, 0.257], [0.068, 0.245]]
    assert [[round(split[n][f"part_{s}_mean_s"], 3) for s in ttft_split.STAGES] for n in order] == [
        [0.043, 0.036, 0.015, 0.254, 0.004, 0.017], [0.043, 0.023, 0.019, 0.239, 0.004, 0.018],
        [0.035, 0.023, 0.017, 0.223, 0.003, 0.017], [0.033, 0.026, 0.015, 0.227, 0.003, 0.017],
        [0.035, 0.019, 0.018, 0.23, 0.003, 0.014], [0.029, 0.022, 0.019, 0.227, 0.003, 0.018]]

    # GPU time at equal work over the six: neither prefill nor decode sorts by configuration;
    # three servers (both kinds) prefilled one 1,024-token chunk more than the other three
    replay = {n: fpm_rows(s38 / f"fl32-{n}") for n in order}
    assert [(g["prefill"]["prefill_tokens"], g["decode"]["decode_requests"], g["dropped"])
            for g in map(fpm.spans, replay.values())] == [(463669, 38805, 0), (463669, 38805, 0),
                                                           (462645, 38805, 0), (462645, 38805, 0),
                                                           (463669, 38805, 0), (462645, 38805, 0)]
    work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in order])]
    assert work == [(1.028, 1.007), (0.989, 0.95), (0.996, 0.993), (0.989, 0.995), (1.003, 1.022), (0.995, 1.033)]


def test_session38_the_extra_1024_tokens_are_one_more_first_turn_missing_the_system_prompt():
    """Session 38's d1, c1 and d3 prefilled 1,024 tokens more than d2, c2 and c3. The replays'
    own per-request `cached_tokens` say why (session 39): six first turns found nothing cached
    against five, every other turn hit, and the shared system prompt holds 1,024 tokens in whole
    pages. How many first turns miss depends on arrival timing, not on the configuration."""
    s38 = RESULTS / "h100-2026-12-05-session38"
    cold, new = [], []
    for n in ("d1", "c1", "d2", "c2", "d3", "c3"):
        out = common.bench_serving_result(s38 / f"fl32-{n}" / f"{n[0]}-c16.jsonl.gz")
        lens, cached = out["input_lens"], out["cached_tokens"]
        assert len(lens) == 195
        misses = [i for i, c in enumerate(cached) if c == 0]
        assert all(lens[i] < 4200 for i in misses)  # first turns: the trace's 4K opening contexts
        assert all(c >= 1024 for c in cached if c)  # every other turn found at least the system prompt
        cold.append(len(misses))
        new.append(sum(lens) - sum(cached))
    assert cold == [6, 6, 5, 5, 6, 5]
    assert new == [463669, 463669, 462645, 462645, 463669, 462645]
    assert max(new) - min(new) == 1024 * (max(cold) - min(cold))


def test_session39_c_d_at_concurrency_1_on_the_128k_trace_reproduce_the_quoted_figures():
    """One H100, 2026-12-06 (session 39): flash-12 at concurrency 1 on the 128K trace (two
    sessions, 46 turns, 14 at >= 96K; the pool holds them), d c d c d (`fl-stages.sh` with
    CONC=1; the sixth server did not fit the device time left). Turn for turn (c) and (d) are
    within 0.3 %; the decode figures' pairings span both sides of 1, and each decode forward's
    floor is the same on all five servers: the slow forwards come in stretches, on both kinds."""
    s39 = RESULTS / "h100-2026-12-06-session39"
    order = ("d1", "c1", "d2", "c2", "d3")
    keys, entry, level = servers_conc1(s39, order)
    assert keys == "dcdcd"
    assert [row_figures(level[n]) for n in order] == [
        [0.122, 0.174, 0.139, 2.25, 4.45], [0.122, 0.167, 0.146, 2.39, 4.11], [0.123, 0.174, 0.144, 2.26, 4.34],
        [0.125, 0.175, 0.139, 2.45, 4.14], [0.132, 0.185, 0.144, 2.49, 3.78]]

    ratios = agentic_report.agentic_ratios(json.loads((s39 / "fl1" / "results.json").read_text()))
    assert c_over_d(ratios, "1") == ([1.012, 1.025, 0.992, 1.02, 0.934, 0.95], [
        [0.954, 1.04], [1.011, 1.096], [0.976, 1.082], [0.997, 1.105], [0.917, 1.043], [0.924, 1.096]])
    paired = ratios["paired_over_d"]["1"]["c"]
    assert (paired["turns"], paired["unpaired"], paired["long_turns"]) == (46, 0, 14)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total")] == [0.998, 1.003, 0.999]

    # each batch-1 decode forward's GPU span: the same floor everywhere; the share of slow ones
    # (> 2.5 ms) is larger on both (c) servers than on d1 and d2 but largest on d3, and does not
    # follow the decoded request's context (percent slow by 32K bin)
    replay = {n: fpm_rows(s39 / f"fl-conc1-{n}", "c1") for n in order}
    spans, by_context = {}, {}
    for n in order:
        dec = decode_only(replay[n])
        ms = sorted(w for w, _ in dec)
        spans[n] = (len(ms), round(ms[len(ms) // 10], 2), round(100 * sum(x > 2.5 for x in ms) / len(ms)))
        bins = [[w for w, ctx in dec if min(ctx // 32000, 3) == b] for b in range(4)]  # the last: >= 96K
        by_context[n] = [round(100 * sum(x > 2.5 for x in w) / len(w)) for w in bins]
    assert by_context["c1"][0] == 60 and by_context["d3"][2] == 79 and max(by_context["d1"]) == 16
    assert by_context["c1"].index(max(by_context["c1"])) == 0 and by_context["d3"].index(max(by_context["d3"])) == 2
    assert spans == {"d1": (9154, 2.17, 12), "c1": (9154, 2.18, 37), "d2": (9154, 2.17, 19), "c2": (9154, 2.18, 41),
                     "d3": (9154, 2.17, 44)}
    work = [(round(x["prefill"], 3), round(x["decode"], 3))
            for x in fpm.work_ratios([replay[n] for n in order])]
    assert work == [(1.016, 0.946), (0.972, 1.02), (1.017, 0.966), (0.974, 1.021), (1.021, 1.047)]

    # the share of slow forwards ranks the servers as the scheduler's time in SGLang's own
    # prepare_for_decode does (the same code for both configurations): the host's speed
    prepare, waited = {}, {}
    for n in order:
        (path,) = (s39 / f"fl-conc1-{n}").glob("*-c1-pyspy.txt.gz")
        own, incl = pyspy.frames(pyspy.read(path))
        prepare[n] = round(incl["ScheduleBatch.prepare_for_decode (schedule_batch.py)"] / pyspy.RATE_HZ, 2)
        waited[n] = round(own["Event.synchronize (torch/cuda/streams.py)"] / pyspy.RATE_HZ, 2)
    assert prepare == {"d1": 2.97, "c1": 3.11, "d2": 3.02, "c2": 3.4, "d3": 3.81}
    assert waited == {"d1": 4.14, "c1": 2.98, "d2": 4.08, "c2": 3.01, "d3": 3.26}  # on the GPU: most on d1, d2
    assert sorted(order, key=prepare.get) == sorted(order, key=lambda n: spans[n][2]) == ["d1", "d2", "c1", "c2", "d3"]

    # (c)'s own code in its scheduler (`bench pyspy`'s last table): every sample with a frame of
    # the package, less those inside the upstream call it wraps (which (d) runs too), is at most
    # 28 and 21 us a batch-1 decode forward: a sixth of the 0.16 ms between the TPOT medians
    split = {n: own_and_wrapped(next((s39 / f"fl-conc1-{n}").glob("*-c1-pyspy.txt.gz"))) for n in order}
    assert {n: w for n, (_, w) in split.items()} == {"d1": 0, "c1": 1.62, "d2": 0, "c2": 1.51, "d3": 0}
    own_s = {n: o for n, (o, _) in split.items()}
    assert own_s == {"d1": 0, "c1": 0.26, "d2": 0, "c2": 0.19, "d3": 0}
    per_forward_us = [round(own_s[n] / spans[n][0] * 1e6) for n in ("c1", "c2")]
    assert per_forward_us == [28, 21]
    tpot = {n: row_figures(level[n])[3] for n in order}
    c_med, d_med = statistics.median([tpot["c1"], tpot["c2"]]), statistics.median([tpot[n] for n in ("d1", "d2", "d3")])
    gap_ms = c_med - d_med
    assert round(gap_ms, 2) == 0.16 and max(per_forward_us) / 1000 < gap_ms / 5
    assert (c_med, d_med) == (2.42, 2.26) and round(d_med / (c_med - max(per_forward_us) / 1000), 3) == 0.945


def test_session41_three_servers_each_at_concurrency_1_decide_tpot_and_sessions_per_min():
    """Two H100s, 2026-12-06 (session 41): flash-12 at concurrency 1 on the 128K trace, as session
    39. On the second machine d c d c d (the sixth server did not fit): every figure and every
    pairing at or above 0.99, TPOT 0.997, with session 39's slow decode stretches absent. The first
    machine, one server each on a slow host, is committed apart and not pooled."""
    s41 = RESULTS / "h100-2026-12-06-session41"
    second, first = s41 / "second-machine", s41 / "first-machine"
    order = ("d1", "c1", "d2", "c2", "d3")
    keys, entry, level = servers_conc1(second, order)
    assert keys == "dcdcd"
    assert [row_figures(level[n]) for n in order] == [
        [0.116, 0.177, 0.125, 2.23, 4.37], [0.109, 0.156, 0.119, 2.24, 4.68], [0.11, 0.161, 0.126, 2.23, 4.67],
        [0.108, 0.155, 0.12, 2.23, 4.69], [0.112, 0.162, 0.122, 2.23, 4.67]]

    ratios = agentic_report.agentic_ratios(json.loads((second / "fl1" / "results.json").read_text()))
    over, pairings = c_over_d(ratios, "1")
    assert over == [1.045, 1.039, 1.029, 1.04, 0.997, 1.003]
    assert pairings == [[1.021, 1.059], [1.03, 1.058], [1.01, 1.072], [1.028, 1.142], [0.995, 0.998], [1.001, 1.072]]
    assert min(min(p) for p in pairings) >= 0.99
    paired = ratios["paired_over_d"]["1"]["c"]
    assert (paired["turns"], paired["unpaired"], paired["long_turns"]) == (46, 0, 14)
    assert [round(paired[k], 3) for k in ("median", "median_long", "total")] == [1.031, 1.039, 1.026]

    # batch-1 decode forwards: (forwards, p10 ms, percent over 2.5 ms); at equal work
    # (prefill, decode) GPU time; (c)'s own scheduler code outside the calls it wraps, and inside
    def decode_spans(folder: Path, names: tuple) -> tuple:
        replay = {n: fpm_rows(folder / f"fl-conc1-{n}", "c1") for n in names}
        spans = {}
        for n in names:
            ms = sorted(w for w, _ in decode_only(replay[n]))
            spans[n] = (len(ms), round(ms[len(ms) // 10], 2), round(100 * sum(x > 2.5 for x in ms) / len(ms), 1))
        work = [(round(x["prefill"], 3), round(x["decode"], 3)) for x in fpm.work_ratios([replay[n] for n in names])]
        own = {n: own_and_wrapped(folder / f"fl-conc1-{n}" / f"{n[0]}-c1-pyspy.txt.gz") for n in names}
        return spans, work, own

    spans, work, own = decode_spans(second, order)
    assert spans == {"d1": (9154, 2.17, 3.6), "c1": (9154, 2.18, 0.6), "d2": (9154, 2.17, 0.5),
                     "c2": (9154, 2.18, 0.6), "d3": (9154, 2.17, 0.5)}
    assert work == [(1.019, 1.006), (0.971, 1.001), (1.02, 0.997), (0.972, 1.0), (1.018, 0.996)]
    assert own == {"d1": (0, 0), "c1": (0.1, 1.28), "d2": (0, 0), "c2": (0.13, 1.49), "d3": (0, 0)}
    assert [round(own[n][0] / spans[n][0] * 1e6) for n in ("c1", "c2")] == [11, 14]
    split = {n: ttft_split.summary(replay_rows(second / f"fl-conc1-{n}", "c1")) for n in order}
    assert [round(split[n]["outside_median_s"], 3) for n in order] == [0.032, 0.028, 0.03, 0.028, 0.03]

    # the first machine: one server each on a slow host; SGLang's own decode preparation and
    # load reporting, which (c) does not change, ran slower during c1 than during d1
    keys, _, level1 = servers_conc1(first, ("d1", "c1"))
    assert keys == "dc"
    assert [row_figures(level1[n]) for n in ("d1", "c1")] == [[0.136, 0.187, 0.158, 2.58, 3.9],
                                                              [0.139, 0.183, 0.158, 2.97, 3.53]]
    ratios1 = agentic_report.agentic_ratios(json.loads((first / "fl1" / "results.json").read_text()))
    assert [round(ratios1["over_d"]["1"]["c"][f], 3) for f in RATIO_FIGS] == [1.003, 1.033, 0.973, 1.022, 0.871, 0.907]
    spans1, _, own1 = decode_spans(first, ("d1", "c1"))
    assert spans1 == {"d1": (9154, 2.2, 46.0), "c1": (9154, 2.58, 93.4)}
    assert own1["c1"] == (0.16, 2.07) and round(own1["c1"][0] / spans1["c1"][0] * 1e6) == 17
    # (self, inclusive) seconds per function
    spy = {n: pyspy.frames(pyspy.read(first / f"fl-conc1-{n}" / f"{n[0]}-c1-pyspy.txt.gz")) for n in ("d1", "c1")}
    assert [round(spy[n][1]["ScheduleBatch.prepare_for_decode (schedule_batch.py)"] / pyspy.RATE_HZ, 2)
            for n in ("d1", "c1")] == [3.35, 3.82]
    assert [round(spy[n][0]["SchedulerLoadInquirer.get_loads (scheduler_components/load_inquirer.py)"] / pyspy.RATE_HZ, 2)
            for n in ("d1", "c1")] == [1.64, 2.5]
