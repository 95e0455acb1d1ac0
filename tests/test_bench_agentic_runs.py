"""Agentic results gathered from several runs (`bench/agentic_runs.py`, `bench/agentic_report.py`) on CPU:
several invocations into one results file, `--repeats` and `--servers` as one level, `bench merge`
of separate invocations (and what it refuses), and the ratio chart's reference."""

from __future__ import annotations

import json

import pytest

from sglang_indexcache.bench import agentic_report, common


def test_a_results_file_gathered_from_several_invocations_reports_every_level():
    """Session 14 ran one config per device call into one results file: (c) and (p) at
    concurrency 1 and 16, then (a) at 16 alone. The report covers both levels (the last call's
    `concurrency` was [16]), (p) is also given over (c), its before, and (a) is not, and the
    kernel variables each server had are listed."""
    def cfg(levels, env=None):
        return {"label": "x", "server_env": env or {},
                "levels": {lv: {"ttft_median_s": t, "ttft_p90_s": t, "ttft_long_median_s": t, "sessions_per_min": 1 / t}
                           for lv, t in levels.items()}}

    results = {"concurrency": [16], "configs": {
        "c": cfg({"1": 0.2, "16": 0.8}, {"SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": "0"}),
        "p": cfg({"1": 0.25, "16": 0.4}, {"SGLANG_INDEXCACHE_TOPK": "v2", "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": "128"}),
        "a": {**cfg({"16": 1.6}), "server_command": "python -m sglang.launch_server --attention-backend dsa"}}}
    assert agentic_report.levels(results) == ["1", "16"]
    r = agentic_report.agentic_ratios(results)
    assert set(r["over_a"]) == {"16"} and set(r["over_a"]["16"]) == {"c", "p"}
    assert r["over_a"]["16"]["p"]["ttft_median_s"] == pytest.approx(4.0)
    assert r["over_c"]["1"]["p"]["ttft_median_s"] == pytest.approx(0.8)  # slower than its before
    assert set(r["over_c"]["16"]) == {"p"}  # (a) is the baseline, not an after of (c)
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "concurrency 1:" in table and "concurrency 16:" in table and "p over c: " in table
    assert "kernels: a SGLang's (dsa); c SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0; p SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=128 " \
           "SGLANG_INDEXCACHE_TOPK=v2" in table
    # since session 21 a run records what "defaults" meant (v2 became the default top-k then, v2-paged in 26)
    table = agentic_report.agentic_table({**results, "ratios": r, "kernel_defaults": common.kernel_defaults()})
    assert table.endswith("(defaults: SGLANG_INDEXCACHE_TOPK=v2-paged SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=128)")


def test_repeated_replays_give_medians_their_spread_and_every_turn():
    """--repeats: a level replayed 3 times on one server reports each figure's median over the
    runs, its [min, max], every run's rows; the ratios get the worst and best pairing."""
    from sglang_indexcache.bench import agentic

    def run(ttft, spm, failed=0, bins=None):
        return {"command": "bench_serving ...", "sessions": 2, "rounds": 4, "failed_rounds": failed,
                "ttft_median_s": ttft, "ttft_p90_s": ttft * 3, "ttft_long_median_s": ttft * 2, "sessions_per_min": spm,
                "cache_hit_rate_pct": 90.0,
                "tpot_median_ms": None, "server": {"forward_median_s": ttft / 2, "turns_paired": 4},
                "ttft_by_context": bins or {"0": {"median_s": ttft, "p90_s": ttft * 3, "n": 4}},
                "turns": [{"session": 0, "turn": t, "ttft_s": ttft} for t in range(4)]}

    one = run(0.2, 3.0)
    assert agentic.combine_runs([one]) is one  # a single run is reported as it is
    level = agentic.combine_runs([run(0.3, 2.0), run(0.1, 4.0, failed=1), run(0.2, 3.5, bins={"16384": {
        "median_s": 0.5, "p90_s": 0.6, "n": 2}})])
    assert level["repeats"] == 3 and level["rounds"] == 4 and level["failed_rounds"] == 1
    assert level["ttft_median_s"] == pytest.approx(0.2) and level["sessions_per_min"] == pytest.approx(3.5)
    assert level["tpot_median_ms"] is None  # absent in every run stays absent
    assert level["server"] == {"forward_median_s": pytest.approx(0.1), "turns_paired": 4}
    counted = [run(0.2, 3.0), run(0.2, 3.0)]
    counted[0]["server"]["indexer_layer_calls"] = {"EXTEND:run": 3.0}
    counted[1]["server"]["indexer_layer_calls"] = {"EXTEND:run": 5.0, "DECODE:run": 1.0}
    assert agentic.combine_runs(counted)["server"]["indexer_layer_calls"] == {"DECODE:run": 1.0, "EXTEND:run": 8.0}
    assert level["ttft_by_context"]["0"] == {"median_s": pytest.approx(0.2), "p90_s": pytest.approx(0.6), "n": 8}
    assert level["ttft_by_context"]["16384"]["n"] == 2  # a bin only one run reached
    assert level["spread"]["ttft_median_s"] == pytest.approx([0.1, 0.3])
    assert level["spread"]["sessions_per_min"] == pytest.approx([2.0, 4.0])
    assert len(level["turns"]) == 12 and {r["run"] for r in level["turns"]} == {0, 1, 2}
    assert [r["ttft_median_s"] for r in level["runs"]] == [0.3, 0.1, 0.2]

    d = agentic.combine_runs([run(0.4, 2.0), run(0.2, 2.5)])
    results = {"concurrency": [1], "configs": {"c": {"label": "c", "levels": {"1": level}},
                                               "d": {"label": "d", "levels": {"1": d}}}}
    r = agentic_report.agentic_ratios(results)
    assert r["over_d"]["1"]["c"]["ttft_median_s"] == pytest.approx(0.3 / 0.2)  # medians: d 0.3, c 0.2
    lo, hi = r["over_d_range"]["1"]["c"]["ttft_median_s"]
    assert (lo, hi) == (pytest.approx(0.2 / 0.3), pytest.approx(0.4 / 0.1))  # time: theirs / ours
    lo, hi = r["over_d_range"]["1"]["c"]["sessions_per_min"]
    assert (lo, hi) == (pytest.approx(2.0 / 2.5), pytest.approx(4.0 / 2.0))  # rate: ours / theirs
    table = agentic_report.agentic_table({**results, "ratios": r})
    assert "medians over repeated runs" in table and "[0.667, 4.000]" in table


def test_a_config_on_several_servers_gets_medians_over_all_their_runs():
    """--servers: the n-th server of every config runs before any config's next; merged, a
    level's figures are medians over every run on every server, each run names its server, each
    server keeps its command and start time, and the raw runs are not written out."""
    from sglang_indexcache.bench import agentic

    def run(ttft, tpot):
        return {"command": "bench_serving ...", "sessions": 2, "rounds": 2, "failed_rounds": 0, "ttft_median_s": ttft,
                "ttft_p90_s": ttft, "ttft_long_median_s": None, "sessions_per_min": 1.0, "cache_hit_rate_pct": 90.0,
                "tpot_median_ms": tpot, "server": {"decode_tokens_per_s_median": 1000 / tpot},
                "ttft_by_context": {"0": {"median_s": ttft, "p90_s": ttft, "n": 2}},
                "turns": [{"session": 0, "turn": t, "ttft_s": ttft} for t in range(2)]}

    def entry(port, runs):
        return {"label": "c", "server_command": f"launch --port {port}", "startup_s": 20.0, "kv_pool_tokens": 9,
                "probe": {"ids_s": 0.1}, "levels": {"1": agentic.combine_runs(runs)}, "_runs": {"1": runs}}

    one = entry(1, [run(0.2, 2.0)])
    assert agentic.merge_servers([one]) == {k: v for k, v in one.items() if k != "_runs"}
    merged = agentic.merge_servers([one, entry(2, [run(0.4, 3.0), run(0.3, 3.2)]), entry(3, [run(0.1, 2.1)])])
    assert "_runs" not in merged
    level = merged["levels"]["1"]
    assert level["run_servers"] == [0, 1, 1, 2] and level["repeats"] == 4
    assert level["ttft_median_s"] == pytest.approx(0.25) and level["tpot_median_ms"] == pytest.approx(2.55)
    assert level["spread"]["tpot_median_ms"] == pytest.approx([2.0, 3.2])
    assert [r["server"]["decode_tokens_per_s_median"] for r in level["runs"]] == pytest.approx([500, 1000 / 3, 312.5, 1000 / 2.1])
    assert [s["server_command"] for s in merged["per_server"]] == ["launch --port 1", "launch --port 2", "launch --port 3"]
    table = agentic_report.agentic_table({"concurrency": [1], "configs": {"c": merged}})
    assert "  c dec tok/s by server: 0: 500, 1: 333, 1: 312, 2: 476" in table


def _replay(ttft, spm=1.0, sessions=2, decode=400.0):
    """One bench_serving replay of a level as `agentic.run_level` returns it: figures, server side, rows."""
    return {"command": "bench_serving ...", "sessions": sessions, "rounds": 2 * sessions, "failed_rounds": 0,
            "ttft_median_s": ttft, "ttft_p90_s": 2 * ttft, "ttft_long_median_s": 3 * ttft, "sessions_per_min": spm,
            "tpot_median_ms": 14.0, "cache_hit_rate_pct": 92.0,
            "server": {"forward_median_s": ttft / 2, "turns_paired": 2 * sessions, "decode_tokens_per_s_median": decode},
            "ttft_by_context": {"0": {"median_s": ttft, "p90_s": 2 * ttft, "n": 2 * sessions}},
            "turns": [{"session": s, "turn": t, "context": 8000 * (t + 1), "cached": 0, "ttft_s": ttft, "error": None}
                      for s in range(sessions) for t in range(2)]}


def _agentic_file(path, configs, finished_at="2026-12-03T10:00:00+00:00", **top):
    """A results.json as one `bench agentic` invocation writes it, one server per config: `configs`
    maps a key to its levels ({"1": level}); `top` replaces top-level fields (trace, gpu, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inv = f"python -m sglang_indexcache.bench agentic --out {path.parent}"
    res = {"workload": "agentic", "model": f"{path.parent}/model", "shape": "glm-5.2-tp8", "pattern": "FFFSSS",
           "gpu": {"name": "NVIDIA H200", "cuda": "13.0"}, "device": "cuda", "versions": {"sglang": "0.5.23"},
           "trace": {"path": f"{path.parent}/trace.json", "generator": "sglang_indexcache.bench.trace",
                     "spec": {"sessions": 16, "seed": 0}, "tokenizer": f"{path.parent}/model", "turns": [2, 2],
                     "last_prompt_tokens": [16000, 16000], "sha256": "ab" * 32},
           "invocation": inv, "concurrency": [1], "mtp": False, "repeats": 1, "servers": 1,
           "kernel_defaults": {"SGLANG_INDEXCACHE_TOPK": "v2"}, "finished_at": finished_at,
           "configs": {key: {"label": f"config {key}", "server_command": f"launch {key} for {path.name}", "levels": lv,
                             "server_env": {}, "startup_s": 100.0, "kv_pool_tokens": 500000,
                             "probe": {"context": 16000, "ids_s": 0.1}, "invocation": inv, "mtp": False,
                             "repeats": max(x.get("repeats", 1) for x in lv.values()), "servers": 1}
                       for key, lv in configs.items()}}
    res.update(top)
    res["ratios"] = agentic_report.agentic_ratios(res)
    path.write_text(json.dumps(res, indent=1))
    return str(path)


def test_merge_joins_the_servers_of_separate_invocations_c_d_d_c(tmp_path):
    """Four one-server files (c, d, d, c): each config has two servers, medians over both, its files, new ratios."""
    import statistics

    from sglang_indexcache.bench import agentic_runs

    c_runs, d_runs = [(0.20, 2.0), (0.32, 2.6)], [(0.50, 1.5), (0.41, 1.2)]
    order = [("c", c_runs[0]), ("d", d_runs[0]), ("d", d_runs[1]), ("c", c_runs[1])]
    files = [_agentic_file(tmp_path / f"call{i}" / "results.json", {key: {"1": _replay(t, spm)}},
                           finished_at=f"2026-12-03T1{i}:00:00+00:00") for i, (key, (t, spm)) in enumerate(order)]
    merged = agentic_runs.merge_results(files)
    assert merged["merged_from"] == files and merged["servers"] == 2 and merged["concurrency"] == [1]
    assert merged["finished_at"] == "2026-12-03T13:00:00+00:00" and "invocation" not in merged["configs"]["c"]
    assert merged["configs"]["c"]["merged_from"] == [files[0], files[3]]
    assert merged["configs"]["d"]["merged_from"] == [files[1], files[2]]
    assert [s["server_command"] for s in merged["configs"]["c"]["per_server"]] == \
        ["launch c for results.json"] * 2 and len(merged["configs"]["c"]["invocations"]) == 2
    med = {}
    for key, runs in (("c", c_runs), ("d", d_runs)):
        cfg = merged["configs"][key]
        level = cfg["levels"]["1"]
        assert cfg["servers"] == 2 and level["run_servers"] == [0, 1] and level["repeats"] == 2
        med[key] = {"ttft_median_s": statistics.median(t for t, _ in runs),
                    "sessions_per_min": statistics.median(s for _, s in runs)}
        assert level["ttft_median_s"] == pytest.approx(med[key]["ttft_median_s"])
        assert level["ttft_long_median_s"] == pytest.approx(3 * med[key]["ttft_median_s"])
        assert level["sessions_per_min"] == pytest.approx(med[key]["sessions_per_min"])
        assert level["spread"]["ttft_median_s"] == pytest.approx(sorted(t for t, _ in runs))
        assert len(level["turns"]) == 2 * 4 and {r["run"] for r in level["turns"]} == {0, 1}
    # c over d: a time is d's over c's, a rate c's over d's (>1: c is faster)
    row = merged["ratios"]["over_d"]["1"]["c"]
    assert row["ttft_median_s"] == pytest.approx(med["d"]["ttft_median_s"] / med["c"]["ttft_median_s"])
    assert row["sessions_per_min"] == pytest.approx(med["c"]["sessions_per_min"] / med["d"]["sessions_per_min"])
    assert merged["ratios"]["over_d_range"]["1"]["c"]["ttft_median_s"] == pytest.approx([0.41 / 0.32, 0.50 / 0.20])
    assert merged["ratios"]["paired_over_d"]["1"]["c"]["median"] == pytest.approx(
        med["d"]["ttft_median_s"] / med["c"]["ttft_median_s"])
    assert "c" not in merged["ratios"].get("over_c", {}).get("1", {})  # d is a reference, not an after of c


@pytest.mark.parametrize("field, change", [
    ("trace", lambda r: r["trace"].update(sha256="cd" * 32)),
    ("gpu", lambda r: r["gpu"].update(name="NVIDIA H100 80GB HBM3")),
    ("pattern", lambda r: r.update(pattern="FSSFSS")),
])
def test_merge_takes_other_paths_but_refuses_another_experiment(field, change, tmp_path):
    """Other trace, tokenizer and model paths merge; another trace sha256, GPU or pattern is refused, naming the field."""
    from sglang_indexcache.bench import agentic_runs

    one = _agentic_file(tmp_path / "one" / "results.json", {"c": {"1": _replay(0.2)}})
    two = _agentic_file(tmp_path / "two" / "results.json", {"c": {"1": _replay(0.3)}})
    first, second = (json.loads(open(f).read()) for f in (one, two))
    assert first["trace"]["path"] != second["trace"]["path"] and first["trace"]["tokenizer"] != second["trace"]["tokenizer"]
    assert agentic_runs.merge_results([one, two])["configs"]["c"]["servers"] == 2
    change(second)
    (tmp_path / "two" / "results.json").write_text(json.dumps(second))
    with pytest.raises(SystemExit, match=f"^{two}: {field} .* differs from {one}'s .*not one experiment"):
        agentic_runs.merge_results([one, two])


@pytest.mark.parametrize("levels", [{"1": _replay(0.3), "16": _replay(0.9, sessions=16)}, {"1": _replay(0.3, sessions=3)}])
def test_merge_refuses_servers_of_a_config_that_replayed_other_turns(levels, tmp_path):
    """A config whose servers ran other concurrencies, or another number of sessions, is refused."""
    from sglang_indexcache.bench import agentic_runs

    one = _agentic_file(tmp_path / "one" / "results.json", {"c": {"1": _replay(0.2)}, "d": {"1": _replay(0.4)}})
    two = _agentic_file(tmp_path / "two" / "results.json", {"c": levels, "d": {"1": _replay(0.5)}})
    with pytest.raises(SystemExit, match="^config c: .*its servers must replay the same turns"):
        agentic_runs.merge_results([one, two])


@pytest.mark.parametrize("field, value", [("label", "config c, FSSFSS"), ("server_env", {"SGLANG_INDEXCACHE_TOPK": "upstream"})])
def test_merge_refuses_servers_of_a_key_that_ran_another_configuration(field, value, tmp_path):
    """Two servers under one key with another label (pattern) or other variables are not one configuration."""
    from sglang_indexcache.bench import agentic_runs

    one = _agentic_file(tmp_path / "one" / "results.json", {"e": {"1": _replay(0.2)}})
    two = _agentic_file(tmp_path / "two" / "results.json", {"e": {"1": _replay(0.3)}})
    second = json.loads(open(two).read())
    second["configs"]["e"][field] = value
    (tmp_path / "two" / "results.json").write_text(json.dumps(second))
    with pytest.raises(SystemExit, match=f"^config e: {two}'s {field} .* differs from {one}'s .*not one configuration"):
        agentic_runs.merge_results([one, two])


def test_an_entry_of_several_servers_is_not_split_again(tmp_path):
    """split_runs refuses an entry that already merges servers (`servers` > 1 or `per_server`), so merge does too."""
    from sglang_indexcache.bench import agentic_runs

    files = [_agentic_file(tmp_path / f"s{i}" / "results.json", {"c": {"1": _replay(0.2 + i / 10)}}) for i in range(2)]
    merged = agentic_runs.merge_results(files)
    entry = json.loads(open(files[0]).read())["configs"]["c"]
    assert agentic_runs.split_runs(entry)["_runs"] == {"1": [entry["levels"]["1"]]}  # one server, one run
    for many in (merged["configs"]["c"], {**entry, "servers": 2}, {**entry, "per_server": merged["configs"]["c"]["per_server"]}):
        with pytest.raises(SystemExit, match="already merges"):
            agentic_runs.split_runs(many)
    again = tmp_path / "merged" / "results.json"
    again.parent.mkdir()
    again.write_text(json.dumps(merged))
    with pytest.raises(SystemExit, match="config 'config c' already merges 2 servers"):
        agentic_runs.merge_results([str(again), files[0]])


def test_a_level_of_repeated_replays_splits_into_its_runs_and_merges_with_another_server(tmp_path):
    """A --repeats level (combine_runs of two runs) splits back into the same two runs; merged with a one-run server, 3 runs."""
    import statistics

    from sglang_indexcache.bench import agentic_runs

    runs = [_replay(0.2, 2.0, decode=300.0), _replay(0.4, 1.5, decode=500.0)]
    one = _agentic_file(tmp_path / "one" / "results.json", {"c": {"1": agentic_runs.combine_runs(runs)}}, repeats=2)
    saved = json.loads(open(one).read())["configs"]["c"]
    assert saved["levels"]["1"]["repeats"] == 2
    assert agentic_runs.split_runs(saved)["_runs"]["1"] == runs
    two = _agentic_file(tmp_path / "two" / "results.json", {"c": {"1": _replay(0.35, 1.8, decode=450.0)}})
    merged = agentic_runs.merge_results([one, two])["configs"]["c"]
    level = merged["levels"]["1"]
    assert merged["repeats"] == [1, 2]  # the servers' own --repeats, which differ
    assert level["repeats"] == 3 and level["run_servers"] == [0, 0, 1]
    assert level["ttft_median_s"] == pytest.approx(statistics.median([0.2, 0.4, 0.35]))
    assert level["sessions_per_min"] == pytest.approx(statistics.median([2.0, 1.5, 1.8]))
    assert [r["server"]["decode_tokens_per_s_median"] for r in level["runs"]] == [300.0, 500.0, 450.0]
    assert [r["run"] for r in level["turns"]] == [0] * 4 + [1] * 4 + [2] * 4
    assert [r["ttft_s"] for r in level["turns"][::4]] == [0.2, 0.4, 0.35]


def test_bench_merge_writes_what_merge_results_gives(tmp_path, capsys):
    """`bench merge A B --out DIR --png P` returns 0 and writes merge_results([A, B]) (but its stamps); one file is refused."""
    from sglang_indexcache.bench import agentic_runs
    from sglang_indexcache.bench.__main__ import main

    files = [_agentic_file(tmp_path / f"s{i}" / "results.json", {"a": {"1": _replay(0.5 + i / 10)},
                                                                  "c": {"1": _replay(0.2 + i / 10)}}) for i in range(2)]
    out = tmp_path / "merged"
    assert main(["merge", *files, "--out", str(out), "--png", str(tmp_path / "merged.png")]) == 0
    assert "c over a: ttft_long_median_s" in capsys.readouterr().out
    written = json.loads((out / "results.json").read_text())
    expected = json.loads(json.dumps(agentic_runs.merge_results(files)))
    stamps = ("merged_at", "invocation")
    assert {k: v for k, v in written.items() if k not in stamps} == {k: v for k, v in expected.items() if k not in stamps}
    assert set(stamps) <= set(written) and written["configs"]["c"]["servers"] == 2
    assert written["invocation"].split()[1:] == ["-m", "sglang_indexcache.bench", "merge", *files, "--out", str(out),
                                                 "--png", str(tmp_path / "merged.png")]
    assert agentic_report.plot_reference(written) == "a"  # the ratio chart divides by (a)
    assert (tmp_path / "merged.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="at least two results files"):
        main(["merge", files[0], "--out", str(tmp_path / "single")])
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "turn.json").write_text(json.dumps({"workload": "turn"}))
    for bad, said in (("broken.json", "not a readable results file"), ("turn.json", "not the results of `bench agentic`"),
                      ("missing.json", "not a readable results file")):
        with pytest.raises(SystemExit, match=f"{bad}: {said}"):
            main(["merge", files[0], str(tmp_path / bad), "--out", str(tmp_path / "bad")])


@pytest.mark.parametrize("keys, ref", [("acd", "a"), ("cd", "d"), ("ce", "c")])
def test_the_ratio_chart_divides_by_the_first_reference_that_ran(keys, ref, tmp_path):
    """(a) where it ran, else (d) (session 23 ran (c) and (d) alone), else (c); the chart says which."""
    path = _agentic_file(tmp_path / "r" / "results.json", {k: {"1": _replay(0.2 + i / 10)} for i, k in enumerate(keys)})
    results = json.loads(open(path).read())
    assert agentic_report.plot_reference(results) == ref
    agentic_report.agentic_plot(results, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000


def test_tables_and_plots_name_the_shape_not_one_invocations_model_folder(tmp_path):
    """`bench merge` keeps the first file's model folder (a temporary path of that invocation);
    the table names the generated shape, and a user's own model folder where no shape was made."""
    path = _agentic_file(tmp_path / "s1" / "results.json", {"c": {"1": _replay(0.2)}})
    results = json.loads(open(path).read())
    assert agentic_report.agentic_table(results).splitlines()[0].startswith("agentic: glm-5.2-tp8 on NVIDIA H200;")
    results["shape"] = None
    assert agentic_report.agentic_table(results).splitlines()[0].startswith(f"agentic: {tmp_path}/s1/model on ")
