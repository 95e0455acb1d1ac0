"""Ratios, table and plot of an agentic results file (`agentic.py`): per concurrency, each
configuration's figures and their speed-ups over (a) dsa all-Full, (d) native sharing and (c)
indexcache at the pattern."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from sglang_indexcache.bench.common import KERNEL_ENV_KEYS, LONG_CONTEXT
from sglang_indexcache.bench.ttft_split import part_line

# figure: (key in a level's summary, higher is better)
AGENTIC_FIGURES = {
    "ttft_long_median_s": False, "ttft_long_p90_s": False, "ttft_median_s": False, "ttft_p90_s": False,
    "tpot_median_ms": False, "sessions_per_min": True, "output_tokens_per_s": True,
    # the scheduler's part of the TTFT: queue and prefill, without the host time outside it
    # (client, HTTP, chat template, tokenization: `ttft_split`), which no configuration runs
    "sched_ttft_long_median_s": False, "sched_ttft_median_s": False,
}


def short_label(label: str, keep: int = 16) -> str:
    """A config's label with any pattern longer than `keep` layers written as its head and its
    count ("FFFSSS... (21 of 78 Full)"): a 78-layer pattern fills a table row or a legend."""
    def shorten(m):
        p = m.group(0)
        return p if len(p) <= keep else f"{p[:6]}... ({p.count('F')} of {len(p)} Full)"

    return re.sub(r"\b[FS]{2,}\b", shorten, label)


# the configs ratios are taken over: dsa all Full, upstream native sharing, indexcache at the pattern
REFERENCES = ("a", "d", "c")


def levels(results: dict) -> list:
    """The concurrencies any configuration ran, as the levels' keys ("1", "16"), in order."""
    found = {lv for entry in results.get("configs", {}).values() for lv in entry.get("levels", {})}
    return sorted(found | {str(x) for x in results.get("concurrency", [])}, key=int)


def agentic_ratios(results: dict) -> dict:
    """Per concurrency, per config: speed-up over (a) dsa all-Full, over (d) native sharing and over
    (c) indexcache at the pattern (the before of a kernel change, as issue 20 asks), where the
    reference ran (>1 means faster: a time divided by ours, or our rate divided by theirs). With
    `--repeats`, `over_a_range`, `over_d_range` and `over_c_range` give each ratio's [worst, best]
    over the pairings of the two configs' runs (min and max of each side's figure). Two levels
    that replayed different numbers of sessions (`--min-sessions` changed between runs merged
    into one file) hold other turns: their figures are not divided (`sessions_over_{ref}` says
    which), and only the turn-for-turn ratios, over the turns both ran, are given."""
    c = results.get("configs", {})
    out = {}
    for ref in REFERENCES:
        for level in levels(results):
            base = c.get(ref, {}).get("levels", {}).get(level)
            if not base:
                continue
            for key, entry in c.items():
                mine = entry.get("levels", {}).get(level)
                if key == ref or not mine or ref == "c" and key in REFERENCES:  # (c): before/after of indexcache
                    continue
                row, span = {}, {}
                same_turns = mine.get("sessions") == base.get("sessions")
                if not same_turns:
                    out.setdefault(f"sessions_over_{ref}", {}).setdefault(level, {})[key] = [
                        mine.get("sessions"), base.get("sessions")]
                for fig, higher in AGENTIC_FIGURES.items() if same_turns else ():
                    x, y = mine.get(fig), base.get(fig)
                    if x and y:
                        row[fig] = x / y if higher else y / x
                    sx, sy = mine.get("spread", {}).get(fig), base.get("spread", {}).get(fig)
                    if sx and sy and min(sx) > 0 and min(sy) > 0:  # worst and best pairing of runs
                        span[fig] = [sx[0] / sy[1], sx[1] / sy[0]] if higher else [sy[0] / sx[1], sy[1] / sx[0]]
                out.setdefault(f"over_{ref}", {}).setdefault(level, {})[key] = row
                if span:
                    out.setdefault(f"over_{ref}_range", {}).setdefault(level, {})[key] = span
                paired = paired_turns(base.get("turns") or [], mine.get("turns") or [])
                if paired:
                    out.setdefault(f"paired_over_{ref}", {}).setdefault(level, {})[key] = paired
    return out


def _tpot(r: dict) -> float | None:
    """A turn's time per output token after the first, as bench_serving's TPOT: its inter-token
    latencies summed over the tokens after the first."""
    n, d = r.get("output_tokens") or 0, r.get("decode_s")
    return d / (n - 1) if n > 1 and d else None


def _by_turn(rows: list) -> dict:
    """(session, turn) -> (context, TTFT, TPOT or None) of the answered turns; with --repeats,
    medians over the runs."""
    seen = {}
    for r in rows:
        if not r.get("error") and r.get("ttft_s") is not None:
            seen.setdefault((r["session"], r["turn"]), []).append((r.get("context") or 0, r["ttft_s"], _tpot(r)))
    out = {}
    for k, v in seen.items():
        tpots = [x for _, _, x in v if x is not None]
        out[k] = (statistics.median(c for c, _, _ in v), statistics.median(t for _, t, _ in v),
                  statistics.median(tpots) if tpots else None)
    return out


def paired_turns(ref_rows: list, my_rows: list) -> dict:
    """Turn for turn: each turn's TTFT on the reference's server over ours (>1: ours is faster),
    for the same session's same turn, which the trace fixes for both. The medians of each side
    mix short and long turns and sessions of different lengths; the ratio of a turn to itself
    does not. Medians of the ratios over every paired turn and over those at >= 96K, and the
    ratio of the summed TTFTs; the same for each turn's TPOT (`tpot_median`, `tpot_total`: the
    ratio of the summed TPOTs), where a server's own TPOT median moved by up to 11 % between
    servers of one configuration (session 42, MTP at concurrency 16). A turn whose context
    differs by more than 1 % between the two (the servers' replies differed) is not paired, and
    counted."""
    ref, mine = _by_turn(ref_rows), _by_turn(my_rows)
    pairs, unpaired = [], 0
    for k in sorted(ref.keys() & mine.keys()):
        (cr, tr, pr), (cm, tm, pm) = ref[k], mine[k]
        if abs(cr - cm) > 0.01 * max(cr, cm, 1) or tm <= 0:
            unpaired += 1
            continue
        pairs.append((cr, tr, tm, pr, pm))
    if not pairs:
        return {}
    long_ = [tr / tm for c, tr, tm, _, _ in pairs if c >= LONG_CONTEXT]
    tpot = [(pr, pm) for *_, pr, pm in pairs if pr and pm]
    return {"turns": len(pairs), "unpaired": unpaired, "median": statistics.median(tr / tm for _, tr, tm, _, _ in pairs),
            "long_turns": len(long_), "median_long": statistics.median(long_) if long_ else None,
            "total": sum(p[1] for p in pairs) / sum(p[2] for p in pairs),
            "tpot_turns": len(tpot), "tpot_median": statistics.median(pr / pm for pr, pm in tpot) if tpot else None,
            "tpot_total": sum(pr for pr, _ in tpot) / sum(pm for _, pm in tpot) if tpot else None}


def model_name(results: dict) -> str:
    """The generated shape's name (its folder is a temporary path of one invocation; `bench merge`
    keeps the first file's), else the model folder a user gave."""
    return results.get("shape") or str(results.get("model"))


def agentic_table(results: dict) -> str:
    c = results.get("configs", {})
    t = results.get("trace", {})
    lines = [f"agentic: {model_name(results)} on {(results.get('gpu') or {}).get('name') or results.get('device')}; "
             f"trace {t.get('spec', {}).get('sessions')} sessions, {sum(t.get('turns', []))} turns, "
             f"up to {max(t.get('last_prompt_tokens') or [0])} tokens"]
    # dec tok/s: the server's own decode rate with the level's sessions all running (its log)
    head = f"  {'':<44}{'TTFT med':>9}{'p90':>7}{'>=96K med':>10}{'TPOT ms':>8}{'sess/min':>9}{'hit %':>7}{'dec tok/s':>10}"
    for level in levels(results):
        lines += [f"concurrency {level}:", head]
        for key in sorted(c):
            s = c[key].get("levels", {}).get(level)
            if not s:
                continue
            long_ = s.get("ttft_long_median_s")
            lines.append(f"  {key} {short_label(c[key]['label'])[:41]:<41}{'*' if s.get('repeats') else ' '}{s['ttft_median_s']:8.3f} {s['ttft_p90_s']:6.3f} "
                         f"{long_ if long_ is not None else float('nan'):9.3f} {s.get('tpot_median_ms') or float('nan'):7.2f} "
                         f"{s['sessions_per_min']:8.2f} {s.get('cache_hit_rate_pct') or float('nan'):6.1f}"
                         f" {s.get('server', {}).get('decode_tokens_per_s_median') or float('nan'):9.0f}"
                         + (f"  FAILED ROUNDS {s['failed_rounds']}" if s.get("failed_rounds") else "")
                         + (f"  KV POOL {pool:,} < {s['kv_working_set_tokens']:,} NEEDED"
                            if (pool := c[key].get("kv_pool_tokens")) and s.get("kv_working_set_tokens", 0) > pool else ""))
        for key in sorted(c):  # --servers: each server's own decode rate, the host's spread between them
            s = c[key].get("levels", {}).get(level) or {}
            if len(set(s.get("run_servers", []))) > 1:
                rates = [r.get("server", {}).get("decode_tokens_per_s_median") for r in s.get("runs", [])]
                lines.append(f"  {key} dec tok/s by server: " + ", ".join(
                    f"{n}: {rate:.0f}" if rate is not None else f"{n}: nan" for n, rate in zip(s["run_servers"], rates)))
        for key in sorted(c):  # --forward-pass-metrics: each run's summed GPU spans against its length
            s = c[key].get("levels", {}).get(level) or {}
            runs = s.get("runs") or [s]
            spans = [(r["gpu_spans"], r["duration_s"]) for r in runs if r.get("gpu_spans")]
            if spans:
                lines.append(f"  {key} GPU spans, s (prefill + decode-only of the run's length): " + ", ".join(
                    f"{g['prefill']['gpu_s']:.1f} + {g['decode']['gpu_s']:.1f} of {d:.1f}" for g, d in spans))
        for key in sorted(c):  # where the TTFT goes, from the server's per-request log (`ttft_split`)
            s = c[key].get("levels", {}).get(level) or {}
            if s.get("parts_turns"):
                lines.append(f"  {key} TTFT by stage, mean s (>= 96K): {part_line(s)}")
        for ref in REFERENCES:
            rows = results.get("ratios", {}).get(f"over_{ref}", {}).get(level, {})
            spans = results.get("ratios", {}).get(f"over_{ref}_range", {}).get(level, {})
            other = results.get("ratios", {}).get(f"sessions_over_{ref}", {}).get(level, {})
            for key, row in sorted(rows.items()):
                span = spans.get(key, {})
                if key in other:
                    lines.append(f"  {key} over {ref}: not divided, {other[key][0]} session(s) against {other[key][1]} "
                                 "(other turns); turn for turn:")
                if row:
                    lines.append(f"  {key} over {ref}: " + ", ".join(
                        f"{k} {v:.3f}" + (f" [{span[k][0]:.3f}, {span[k][1]:.3f}]" if k in span else "")
                        for k, v in row.items()))
                pair = results.get("ratios", {}).get(f"paired_over_{ref}", {}).get(level, {}).get(key)
                if pair:
                    long_ = f"{pair['median_long']:.3f}" if pair["median_long"] is not None else "none"
                    lines.append(f"  {key} over {ref}, turn for turn: median {pair['median']:.3f} ({pair['turns']} turns), "
                                 f">=96K {long_} ({pair['long_turns']}), total TTFT {pair['total']:.3f}"
                                 + (f"; TPOT median {pair['tpot_median']:.3f} ({pair['tpot_turns']} turns), "
                                    f"total {pair['tpot_total']:.3f}" if pair.get("tpot_median") else "")
                                 + (f", {pair['unpaired']} unpaired" if pair["unpaired"] else ""))
    lines += probe_lines(c)
    kernels = {key: " ".join(f"{k}={v}" for k, v in sorted(c[key].get("server_env", {}).items()) if k in KERNEL_ENV_KEYS)
               for key in sorted(c)}
    if any(kernels.values()):  # what the labels do not say: a variable inherited from the environment
        defaults = " ".join(f"{k}={v}" for k, v in (results.get("kernel_defaults") or {}).items())
        def named(key, v):  # a `dsa` server runs SGLang's kernels whatever our variables say
            if "--attention-backend dsa" in c[key].get("server_command", ""):
                return f"{key} SGLang's (dsa)"
            return f"{key} {v or 'defaults'}"
        lines.append("  kernels: " + "; ".join(named(key, v) for key, v in kernels.items())
                     + (f" (defaults: {defaults})" if defaults else ""))
    if any(s.get("repeats") for v in c.values() for s in v.get("levels", {}).values()):
        lines.append("  * medians over repeated runs (--repeats on a server, --servers); ratios in [ ]: worst and best "
                     "pairing of the runs")
    return "\n".join(lines)


def probe_lines(configs: dict) -> list:
    """Each server's probe (one long turn, a few new tokens, through each door): the client's time
    and, where its log had them, the server's forward time (`bench/probe.py`), medians."""
    lines = []
    for key in sorted(configs):
        entry = configs[key]
        probes = [s.get("probe") for s in entry.get("per_server") or [entry]]
        for n, p in enumerate(probes):
            if not p:
                continue
            fwd = p.get("forward_s") or {}
            doors = ", ".join(f"{d[:-2]} {p[d]:.3f}" + (f" ({fwd[d]:.3f})" if d in fwd else "")
                              for d in ("chat_s", "text_s", "ids_s") if d in p)
            name = f"{key}{n}" if len(probes) > 1 else key
            prof = p.get("profile") or {}
            gpu = (f"; profiled ids: GPU busy {prof['busy_us'] / 1e3:.1f} ms of span {prof['span_us'] / 1e3:.1f} ms"
                   if prof.get("busy_us") is not None else "")
            lines.append(f"  probe {name} at {p.get('context')} tokens, s (server forward): {doors}{gpu}")
    return lines


REFERENCE_NAMES = {"a": "dsa, all Full", "d": "dsa native sharing", "c": "indexcache at the pattern"}


def plot_reference(results: dict) -> str:
    """The reference of the ratio chart: (a) dsa all-Full where it ran, else (d), else (c) (a run
    of (c) against (d) alone, as session 23's, has no (a) to divide by)."""
    ratios = results.get("ratios", {})
    return next((ref for ref in REFERENCES if ratios.get(f"over_{ref}")), "a")


def agentic_plot(results: dict, png: Path) -> None:
    """TTFT against context per configuration (one panel per concurrency) and a bar chart of
    the speed-ups over the first reference that ran (`plot_reference`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = results["configs"]
    shown = levels(results)
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(5 * (len(shown) + 1), 4.5), squeeze=False)
    axes = list(axes[0])
    color = {key: f"C{i}" for i, key in enumerate(sorted(c))}  # one colour per config in every panel
    for level, ax in zip(shown, axes):
        for key in sorted(c):
            s = c[key].get("levels", {}).get(level)
            if not s:
                continue
            bins = sorted(s["ttft_by_context"], key=int)
            xs = [(int(b) + 8192) / 1024 for b in bins]
            ax.plot(xs, [s["ttft_by_context"][b]["median_s"] for b in bins], marker="o", color=color[key],
                    label=f"{key}: {short_label(c[key]['label'])}")
            ax.fill_between(xs, [s["ttft_by_context"][b]["median_s"] for b in bins],
                            [s["ttft_by_context"][b]["p90_s"] for b in bins], alpha=0.12, color=color[key])
        ax.set_xlabel("turn context (K tokens, 16K bins)")
        ax.set_ylabel("time to first token (s): median, band to p90")
        ax.set_title(f"concurrency {level}")
        ax.legend(fontsize=6)
    ax = axes[-1]
    ref = plot_reference(results)
    over = results.get("ratios", {}).get(f"over_{ref}", {})
    keys = sorted({k for lv in over.values() for k in lv})
    width = 0.8 / max(1, len(shown))
    for i, level in enumerate(shown):
        vals = [over.get(level, {}).get(k, {}).get("ttft_long_median_s") for k in keys]  # None: a pair not run
        # levels of other sessions (not divided): their turn-for-turn ratio, hatched
        other = results.get("ratios", {}).get(f"sessions_over_{ref}", {}).get(level, {})
        paired = results.get("ratios", {}).get(f"paired_over_{ref}", {}).get(level, {})
        vals = [paired.get(k, {}).get("median_long") if k in other else v for k, v in zip(keys, vals)]
        bars = ax.bar([j + i * width for j in range(len(keys))], [v or 0.0 for v in vals], width=width,
                      label=f"concurrency {level}", color=f"C{i}")
        for bar, k in zip(bars, keys):
            if k in other:
                bar.set_hatch("//")
        ax.bar_label(bars, labels=[(f"{v:.2f}" + (" turn for turn" if k in other else "")) if v else "not run"
                                   for k, v in zip(keys, vals)], fontsize=6)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xticks([j + width * (len(shown) - 1) / 2 for j in range(len(keys))], keys)
    ax.set_ylabel(f"TTFT speed-up over ({ref}), turns at >= 96K")
    ax.set_title(f"speed-up over {REFERENCE_NAMES[ref]} (hatched: turn for turn)", fontsize=9)
    ax.legend(fontsize=7)
    gpu = (results.get("gpu") or {}).get("name") or results.get("device")
    fig.suptitle(f"agentic sessions: {model_name(results)} on {gpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
