"""Several replays of one configuration as one: `--repeats` on a server (`combine_runs`),
`--servers` in one invocation (`merge_servers`), and servers of separate invocations
(`merge_results`, `python -m sglang_indexcache.bench merge`): a device call shorter than
four servers of the 78-layer shape can still give each configuration two servers, one
invocation per call, in an order that balances the host's drift (c, d, d, c)."""

from __future__ import annotations

import datetime as _dt
import json
import statistics
import sys
from pathlib import Path

from sglang_indexcache.bench.agentic_report import AGENTIC_FIGURES, agentic_ratios, agentic_table


def combine_runs(runs: list) -> dict:
    """A level replayed `--repeats` times on one server: each figure is the median over the runs
    of that run's figure (per context bin too), failed rounds are summed, `spread` holds each
    compared figure's [min, max] over the runs, `runs` each run's figures, and `turns` every
    run's rows marked with its run."""
    if len(runs) == 1:
        return runs[0]

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    first = runs[0]
    out = {"command": first["command"], "repeats": len(runs)}
    for k, v in first.items():
        if k == "failed_rounds":  # a count: every run's failures
            out[k] = sum(r[k] for r in runs)
        elif v is None or isinstance(v, (int, float)) and not isinstance(v, bool):  # a figure (None: not measured)
            out[k] = med([r.get(k) for r in runs])
    out["server"] = {k: med([r["server"].get(k) for r in runs]) for k in first["server"] if k != "indexer_layer_calls"}
    if "indexer_layer_calls" in first["server"]:  # counts: every run's
        calls = [r["server"].get("indexer_layer_calls", {}) for r in runs]
        out["server"]["indexer_layer_calls"] = {k: sum(c.get(k, 0.0) for c in calls) for k in sorted({k for c in calls for k in c})}
    bins = sorted({b for r in runs for b in r["ttft_by_context"]}, key=int)
    out["ttft_by_context"] = {b: {"median_s": med([r["ttft_by_context"].get(b, {}).get("median_s") for r in runs]),
                                  "p90_s": med([r["ttft_by_context"].get(b, {}).get("p90_s") for r in runs]),
                                  "n": sum(r["ttft_by_context"].get(b, {}).get("n", 0) for r in runs)} for b in bins}
    out["spread"] = {k: [min(vals), max(vals)] for k in AGENTIC_FIGURES
                     if (vals := [r[k] for r in runs if r.get(k) is not None])}
    out["runs"] = [{k: v for k, v in r.items() if k not in ("turns", "command")} for r in runs]
    out["turns"] = [{**row, "run": i} for i, r in enumerate(runs) for row in r["turns"]]
    return out


def merge_servers(entries: list) -> dict:
    """A configuration served `--servers` times: each level's figures are medians over every
    run on every server (`combine_runs`), `run_servers` says which server each run had, and
    `per_server` keeps each server's command, start time, pool and probe. One server: its entry.
    On a host whose speed differs from one server process to the next (session 19: batch-1
    decode 340 to 490 tokens/s for the same configuration), one server per configuration
    compares hosts as much as configurations."""
    first = {k: v for k, v in entries[0].items() if k != "_runs"}
    if len(entries) == 1:
        return first
    out = {**first, "per_server": [{k: e.get(k) for k in ("server_command", "startup_s", "kv_pool_tokens", "probe")}
                                for e in entries]}
    out["levels"] = {}
    for c in first["levels"]:  # a server saved mid-way (`run_config`'s on_level) has fewer levels
        runs = [(i, r) for i, e in enumerate(entries) for r in e["_runs"].get(c, [])]
        out["levels"][c] = {**combine_runs([r for _, r in runs]), "run_servers": [i for i, _ in runs]}
    return out


# what two results files must share to be one experiment: the same model shape and pattern,
# trace (its metadata: sizes, seed, prompt lengths, the conversations' sha256), GPU model, and
# meaning of unset kernel variables; the paths of the model, its tokenizer and the trace may
# differ (each invocation had its own folder)
MERGE_SAME = ("workload", "shape", "pattern", "device", "mtp", "kernel_defaults")
# what a configuration's servers must share: its label (which names its pattern) and the
# variables its server ran with (SGLANG_INDEXCACHE_TOPK and the like)
SERVER_SAME = ("label", "server_env")


def _trace_meta(results: dict) -> dict:
    return {k: v for k, v in (results.get("trace") or {}).items() if k not in ("path", "tokenizer")}


def _load(path) -> dict:
    """An agentic results file, or a SystemExit naming the file and what is wrong with it."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: not a readable results file ({e})") from None
    if not isinstance(results, dict) or results.get("workload") != "agentic":
        raise SystemExit(f"{path}: not the results of `bench agentic`")
    return results


def split_runs(entry: dict) -> dict:
    """A saved one-server entry with its levels' single runs back under `_runs` (what
    `merge_servers` takes): a level of one run is that run; one of `--repeats` runs is split
    by its rows' `run` marks (`combine_runs` kept every run's figures and rows)."""
    if entry.get("servers", 1) > 1 or entry.get("per_server"):
        raise SystemExit(f"config {entry.get('label')!r} already merges {entry.get('servers')} servers; "
                         "merge the files of its single servers instead")
    runs = {}
    for c, lv in entry.get("levels", {}).items():
        if "runs" not in lv:
            runs[c] = [lv]
            continue
        runs[c] = [{**r, "command": lv["command"],
                    "turns": [{k: v for k, v in row.items() if k != "run"} for row in lv["turns"] if row.get("run") == i]}
                   for i, r in enumerate(lv["runs"])]
    return {**entry, "_runs": runs}


def merge_results(files: list, invocation: str | None = None) -> dict:
    """Results files of separate `bench agentic` invocations on the same trace, shape and GPU
    as one, each file's entry of a configuration one server of it (in the files' order): a
    level's figures are medians over every server's runs (`merge_servers`), the ratios are
    taken again. Refuses files that are not one experiment (`MERGE_SAME`, the trace, the GPU),
    or a configuration whose servers ran other concurrencies, numbers of sessions, labels or
    variables (`SERVER_SAME`)."""
    if len(files) < 2:
        raise SystemExit("merge needs at least two results files")
    loaded = [(str(f), _load(f)) for f in files]
    first_name, first = loaded[0]
    for name, res in loaded[1:]:
        for field, mine, theirs in [*((k, res.get(k), first.get(k)) for k in MERGE_SAME),
                                    ("trace", _trace_meta(res), _trace_meta(first)),
                                    ("gpu", (res.get("gpu") or {}).get("name"), (first.get("gpu") or {}).get("name"))]:
            if mine != theirs:
                raise SystemExit(f"{name}: {field} {mine!r} differs from {first_name}'s {theirs!r}; not one experiment")
    keys = list(dict.fromkeys(k for _, res in loaded for k in res.get("configs", {})))
    merged = {}
    for key in keys:
        have = [(name, res["configs"][key]) for name, res in loaded if key in res.get("configs", {})]
        shape = {c: lv.get("sessions") for c, lv in have[0][1].get("levels", {}).items()}
        for name, e in have[1:]:
            theirs = {c: lv.get("sessions") for c, lv in e.get("levels", {}).items()}
            if theirs != shape:
                raise SystemExit(f"config {key}: {name} ran levels (concurrency: sessions) {theirs}, "
                                 f"{have[0][0]} {shape}; its servers must replay the same turns")
            for field in SERVER_SAME:  # one configuration: its pattern (in the label) and variables
                if e.get(field) != have[0][1].get(field):
                    raise SystemExit(f"config {key}: {name}'s {field} {e.get(field)!r} differs from "
                                     f"{have[0][0]}'s {have[0][1].get(field)!r}; not one configuration")
        entry = merge_servers([split_runs(e) for _, e in have])
        repeats = sorted({e.get("repeats") or 1 for _, e in have})
        merged[key] = {**entry, "servers": len(have), "mtp": have[0][1].get("mtp"),
                       "repeats": repeats[0] if len(repeats) == 1 else repeats,
                       "invocations": [e.get("invocation") for _, e in have],
                       "merged_from": [name for name, _ in have]}
        merged[key].pop("invocation", None)
    out = {**{k: v for k, v in first.items() if k not in ("configs", "ratios", "invocation")},
           "configs": merged, "merged_from": [name for name, _ in loaded],
           "invocation": invocation or " ".join([sys.executable, "-m", "sglang_indexcache.bench", "merge", *map(str, files)]),
           "concurrency": sorted({c for _, res in loaded for c in res.get("concurrency", [])}),
           "servers": max(e["servers"] for e in merged.values()) if merged else 0,
           "finished_at": max((res.get("finished_at") or "") for _, res in loaded),
           "merged_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    out["ratios"] = agentic_ratios(out)
    return out


def merge_cmd(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sglang_indexcache.bench", "merge", *args.results, "--out", str(out),
           *(["--png", args.png] if args.png else [])]
    results = merge_results(args.results, " ".join(cmd))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(agentic_table(results))
    if args.png:
        from sglang_indexcache.bench.agentic_report import agentic_plot

        agentic_plot(results, Path(args.png))
    return 0
