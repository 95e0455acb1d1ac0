"""Ratios, tables and plots of a results file (prefill and decode; the agentic workload's
own are in `agentic_report`)."""

from __future__ import annotations

import json
from pathlib import Path

def ratios(results: dict) -> dict:
    c = results.get("configs", {})
    out = {}

    def pre(k, n):
        return c.get(k, {}).get("prefill", {}).get("latency_s", {}).get(n, {}).get("median")

    lengths = sorted({n for v in c.values() for n in v.get("prefill", {}).get("latency_s", {})}, key=int)
    for n in lengths:
        row = {}
        if pre("a", n) and pre("b", n):
            row["b_over_a_time"] = pre("b", n) / pre("a", n)
        if pre("c", n) and pre("d", n):
            row["c_speed_over_d"] = pre("d", n) / pre("c", n)
        if pre("a", n) and pre("c", n):
            row["c_speedup_over_a"] = pre("a", n) / pre("c", n)
        if pre("a", n) and pre("d", n):
            row["d_speedup_over_a"] = pre("a", n) / pre("d", n)
        out[f"prefill_{n}"] = row
    # two decode figures per config: SGLang's own gen-throughput log (median over the long
    # runs; inter-quartile range 0.4-4% on the H200) and the wall-clock
    # differential (per-call HTTP timing, a few % of noise)
    for tag, field in (("log", "log_gen_throughput_median"), ("wallclock", "tokens_per_s")):
        dec = {k: v["decode"][field] for k, v in c.items() if v.get("decode", {}).get(field)}
        row = {}
        for x, y in (("b", "a"), ("c", "d"), ("c", "a"), ("c", "b"), ("d", "a"), ("c", "i"), ("i", "d")):
            if x in dec and y in dec:
                row[f"{x}_over_{y}"] = dec[x] / dec[y]
        if row:
            out[f"decode_tokens_per_s_{tag}"] = row
    pools = {k: v.get("prefill", v.get("decode", {})).get("kv_pool_tokens") for k, v in c.items()}
    if pools.get("c") and pools.get("d"):
        out["kv_pool_c_over_d"] = pools["c"] / pools["d"]
    if pools.get("a") and pools.get("c"):
        out["kv_pool_c_over_a"] = pools["c"] / pools["a"]
    return out


def table(results: dict) -> str:
    c = results.get("configs", {})
    tp = results.get("tp_size") or 1
    lines = [f"model: {results.get('model')}; GPU: {(results.get('gpu') or {}).get('name')}" + (f" x {tp} (TP {tp})" if tp > 1 else "")]
    lengths = sorted({n for v in c.values() for n in v.get("prefill", {}).get("latency_s", {})}, key=int)
    if lengths:
        lines.append("prefill, batch 1, median seconds:")
        lines.append(f"{'context':>8} " + " ".join(f"{k:>9}" for k in sorted(c)) + "   b/a    d/c(speed c)  a/c")
        for n in lengths:
            vals = {k: c[k].get("prefill", {}).get("latency_s", {}).get(n, {}).get("median") for k in sorted(c)}
            r = results.get("ratios", {}).get(f"prefill_{n}", {})
            lines.append(
                f"{int(n):>8} " + " ".join(f"{v:9.4f}" if v else f"{'-':>9}" for v in vals.values())
                + f"  {r.get('b_over_a_time', float('nan')):.3f}  {r.get('c_speed_over_d', float('nan')):.3f}"
                + f"        {r.get('c_speedup_over_a', float('nan')):.2f}x"
            )
    dec = {k: v["decode"] for k, v in c.items() if "decode" in v}
    if dec:
        any_d = next(iter(dec.values()))
        lines.append(f"decode, {any_d['batch_size']} concurrent requests at {any_d['context']} tokens of context, tokens/s:")
        lines.append(f"  {'':<38} {'SGLang log median':>18} {'wall-clock':>11} {'profiled step period':>20} {'GPU busy/step':>14}")
        for k, d in sorted(dec.items()):
            log = d.get("log_gen_throughput_median")
            prof = d.get("profile") or {}
            host, busy = prof.get("host_us_per_step"), prof.get("busy_us_per_step")
            lines.append(f"  {k} {c[k]['label']:<36} {log if log is not None else float('nan'):18.1f} {d['tokens_per_s']:11.1f}"
                         + (f" {host / 1e3:17.3f} ms" if host else f" {'-':>20}")
                         + (f" {busy / 1e3:11.3f} ms" if busy else f" {'-':>14}"))
        for tag in ("log", "wallclock"):
            r = results.get("ratios", {}).get(f"decode_tokens_per_s_{tag}")
            if r:
                lines.append(f"  ratios ({tag}): " + ", ".join(f"{k.replace('_over_', '/')} {v:.3f}" for k, v in r.items()))
    pools = {k: v.get("prefill", v.get("decode", {})).get("kv_pool_tokens") for k, v in c.items()}
    lines.append("KV pool tokens: " + ", ".join(f"{k}={v}" for k, v in sorted(pools.items())))
    return "\n".join(lines)


def report_cmd(args) -> int:
    results = json.loads(Path(args.results).read_text())
    if results.get("workload") == "agentic":
        from sglang_indexcache.bench.agentic_report import agentic_plot, agentic_ratios, agentic_table

        results["ratios"] = agentic_ratios(results)
        print(agentic_table(results))
        draw = agentic_plot
    elif results.get("workload") == "turn":
        from sglang_indexcache.bench.roofline import roofline_table

        print(turn_table(results))
        print(roofline_table(results))
        draw = turn_plot
    elif results.get("workload") == "search":
        from sglang_indexcache.bench import search

        print(search.table(results))
        draw = search.plot
    elif results.get("workload") == "topk":
        from sglang_indexcache.bench import topk

        print(topk.table(results))
        draw = topk.plot
    elif results.get("workload") == "pp":
        print(pp_table(results))
        draw = pp_plot
    else:
        results["ratios"] = ratios(results)
        print(table(results))
        draw = plot
    if args.png:
        draw(results, Path(args.png))
        print(f"wrote {args.png}")
    return 0


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = results["configs"]
    pre = [k for k in sorted(c) if c[k].get("prefill", {}).get("latency_s")]
    dec = [k for k in sorted(c) if "decode" in c[k]]
    # decode --profile-steps: the GPU's own time, which host noise does not move
    prof = [k for k in dec if ((c[k]["decode"].get("profile") or {}).get("kernels") or {}).get("families")]
    n = 2 * bool(pre) + bool(dec) + bool(prof)
    fig, axes = plt.subplots(1, n, figsize=(max(7.5, 5.5 * n), 4.5), squeeze=False)
    axes = list(axes[0])
    if pre:
        ax = axes.pop(0)
        for k in pre:
            lat = c[k]["prefill"]["latency_s"]
            xs = sorted(lat, key=int)
            ax.plot([int(x) // 1024 for x in xs], [lat[x]["median"] for x in xs], marker="o", label=f"{k}: {c[k]['label']}")
        ax.set_xlabel("context (K tokens)")
        ax.set_ylabel("prefill latency, batch 1 (s)")
        ax.set_title("prefill (median)")
        ax.legend(fontsize=7)
        ax = axes.pop(0)
        base = c.get("a", {}).get("prefill", {}).get("latency_s", {})
        for k in pre:
            lat = c[k]["prefill"]["latency_s"]
            xs = [x for x in sorted(lat, key=int) if x in base]
            if xs:
                ax.plot([int(x) // 1024 for x in xs], [base[x]["median"] / lat[x]["median"] for x in xs],
                        marker="o", label=f"{k}: {c[k]['label']}")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_xlabel("context (K tokens)")
        ax.set_ylabel("prefill speed-up over (a)")
        ax.set_title("speed-up over upstream dsa, all Full")
        ax.legend(fontsize=7)
    if dec:
        ax = axes.pop(0)
        xs = range(len(dec))
        for off, field, label in ((-0.2, "log_gen_throughput_median", "SGLang log median"),
                                  (0.2, "tokens_per_s", "wall-clock differential")):
            vals = [c[k]["decode"].get(field) or 0.0 for k in dec]
            bars = ax.bar([x + off for x in xs], vals, width=0.4, label=label)
            ax.bar_label(bars, labels=[f"{v:.0f}" for v in vals], fontsize=7)
        d0 = c[dec[0]]["decode"]
        ax.set_title(f"decode, {d0['batch_size']} concurrent at {d0['context'] // 1024}K context")
        ax.set_ylabel("tokens/s")
        ax.set_xticks(list(xs), [f"{k}: {c[k]['label']}" for k in dec], fontsize=7, rotation=15)
        ax.legend(fontsize=7, loc="lower right")
    if prof:
        ax = axes.pop(0)
        tables = {k: c[k]["decode"]["profile"] for k in prof}
        fams = sorted({f for t in tables.values() for f in t["kernels"]["families"]},
                      key=lambda f: -max(t["kernels"]["families"].get(f, {}).get("us", 0) for t in tables.values()))
        bottom = [0.0] * len(prof)
        for f in fams:
            ms = [tables[k]["kernels"]["families"].get(f, {}).get("us", 0) / 1e3 for k in prof]
            ax.bar(range(len(prof)), ms, bottom=bottom, width=0.6, label=f)
            bottom = [b + m for b, m in zip(bottom, ms)]
        ax.bar_label(ax.containers[-1], labels=[f"{b:.1f}" for b in bottom], fontsize=7)
        ax.set_title(f"GPU time in {tables[prof[0]]['steps']} profiled scheduler steps, by kernel family")
        ax.set_ylabel("ms (kernel time)")
        ax.set_xticks(range(len(prof)), [f"{k}: {c[k]['label']}" for k in prof], fontsize=7, rotation=15)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{results.get('model')} on {(results.get('gpu') or {}).get('name')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)




def turn_table(results: dict) -> str:
    """One row per configuration and turn size: wall and server-forward medians, the profiled
    forward's GPU busy time and idle gaps, the indexer's kernels per Full layer, and the
    forward's speed-up over (a)."""
    from sglang_indexcache.bench.roofline import per_full_layer

    c = results["configs"]
    per_layer = per_full_layer(results)
    lines = [f"one turn on {results['context']} cached tokens: {results.get('model')}",
             f"  {'config':<36} {'new':>6} {'wall ms':>8} {'fwd ms':>8} {'GPU ms':>8} {'gaps ms':>8} "
             f"{'logits/F':>9} {'top-k/F':>8} {'fwd a/x':>8}"]
    for key in sorted(c):
        for n, t in c[key]["turns"].items():
            k = t["kernels"]
            per = {f: per_layer[key][n].get(f, 0.0) for f in ("indexer logits", "top-k")}
            base = c.get("a", {}).get("turns", {}).get(n, {}).get("forward_median_ms")
            speed = f"{base / t['forward_median_ms']:.2f}" if base and t["forward_median_ms"] else "-"
            lines.append(f"  {key + ' ' + c[key]['label']:<36.36} {'+' + n:>6} {t['wall_median_s'] * 1e3:8.1f} "
                         f"{t['forward_median_ms'] or float('nan'):8.1f} {k.get('busy_us', 0) / 1e3:8.1f} "
                         f"{k.get('gap_us', 0) / 1e3:8.1f} {per['indexer logits']:9.2f} {per['top-k']:8.2f} {speed:>8}")
    return "\n".join(lines)


def turn_plot(results: dict, png: Path) -> None:
    """Per turn size, one stacked bar per configuration: the profiled forward's GPU time by
    kernel family, and the idle gaps (host time the GPU waited for)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = results["configs"]
    sizes = [str(n) for n in results["new"]]
    fams = sorted({f for e in c.values() for t in e["turns"].values() for f in t["kernels"].get("families", {})})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4.5), squeeze=False)
    for n, ax in zip(sizes, axes[0]):
        keys = [k for k in sorted(c) if n in c[k]["turns"]]
        bottom = [0.0] * len(keys)
        for f in [*fams, "idle gaps"]:
            vals = []
            for k in keys:
                kt = c[k]["turns"][n]["kernels"]
                us = kt.get("gap_us", 0.0) if f == "idle gaps" else kt.get("families", {}).get(f, {}).get("us", 0.0)
                vals.append(us / 1e3)
            ax.bar(keys, vals, bottom=bottom, label=f, hatch="//" if f == "idle gaps" else None)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(f"+{n} new tokens")
        ax.set_ylabel("profiled forward (ms)")
        ax.set_xticks(range(len(keys)), [f"{k}\n{c[k]['full_layers']} Full" for k in keys])
    axes[0][-1].legend(fontsize=7)
    gpu = (results.get("gpu") or {}).get("name") or results.get("device")
    fig.suptitle(f"one turn on {results['context']} cached tokens: {results.get('model')} on {gpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def pp_table(results: dict) -> str:
    """One row per configuration and prompt length: wall and forward medians, each stage's GPU
    ms, the bytes that crossed the boundary for the request (all tensors; the top-k alone), the
    peak memory per stage, and the forward's ratio to (a); the decode point last."""
    c = results["configs"]
    lines = [f"pipeline, PP {results['pp_size']}, pattern {results['pattern']}: {results.get('model')}",
             f"  {'config':<44} {'tokens':>7} {'wall ms':>8} {'fwd ms':>8} {'stage ms':>16} {'sent MB':>8} "
             f"{'top-k MB':>8} {'peak GiB':>12} {'fwd a/x':>7}"]
    for key in c:
        for n, e in c[key]["lengths"].items():
            sent = sum(e["boundary_bytes"].values()) / 1e6
            topk = e["boundary_bytes"].get("topk_indices", 0) / 1e6
            peak = "/".join(f"{p / 2**30:.1f}" if p else "-" for p in e["peak_bytes"])
            base = c.get("a", {}).get("lengths", {}).get(n, {}).get("forward_median_s")
            ratio = f"{base / e['forward_median_s']:.2f}" if base and e["forward_median_s"] else "-"
            stages = "/".join(f"{ms:.1f}" for ms in e["stage_ms_median"])
            lines.append(f"  {key + ' ' + c[key]['label']:<44.44} {n:>7} {e['wall_median_s'] * 1e3:8.1f} "
                         f"{(e['forward_median_s'] or float('nan')) * 1e3:8.1f} {stages:>16} {sent:8.2f} {topk:8.2f} "
                         f"{peak:>12} {ratio:>7}")
    for key in c:
        d = c[key].get("decode")
        if d:
            lines.append(f"  decode {key}: {d['batch_size']} x {d['context']}: {d['tokens_per_s']:.1f} tok/s "
                         f"(SGLang log median {d['log_gen_throughput_median']})")
    return "\n".join(lines)


def pp_plot(results: dict, png: Path) -> None:
    """Forward time per prompt length per configuration, and the top-k bytes sent per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = results["configs"]
    keys = list(c)
    lengths = [str(n) for n in results["lengths"]]
    decoded = [k for k in keys if c[k].get("decode")]
    fig, axes = plt.subplots(1, 3 if decoded else 2, figsize=(18 if decoded else 12, 4.5))
    width = 0.8 / max(1, len(keys))
    if decoded:
        d0 = c[decoded[0]]["decode"]
        axes[2].bar(decoded, [c[k]["decode"]["tokens_per_s"] for k in decoded])
        axes[2].set_title(f"decode, {d0['batch_size']} x {d0['context']} tokens: tokens/s (wall-clock)")
    for i, k in enumerate(keys):
        xs = [j + i * width for j in range(len(lengths))]
        fwd = [(c[k]["lengths"].get(n, {}).get("forward_median_s") or 0) * 1e3 for n in lengths]
        topk = [c[k]["lengths"].get(n, {}).get("boundary_bytes", {}).get("topk_indices", 0) / 1e6 for n in lengths]
        axes[0].bar(xs, fwd, width, label=f"{k}")
        axes[1].bar(xs, topk, width, label=f"{k}")
    for ax, title in zip(axes[:2], ("prefill forward, median (ms)", "top-k bytes sent across the boundary (MB)")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(lengths))], lengths)
        ax.set_xlabel("prompt tokens")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    gpu = (results.get("gpu") or {}).get("name") or results.get("device")
    fig.suptitle(f"PP {results['pp_size']}, {results['pattern']}: {results.get('model')} on {gpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
