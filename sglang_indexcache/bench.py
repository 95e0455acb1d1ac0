"""Prefill and decode side by side: SGLang's `dsa` backend against `indexcache` (CUDA GPU).

Four configurations of one model, run one after another in one invocation:
  a  upstream `dsa`, every layer Full
  b  `indexcache`, every layer Full (`--index-cache-pattern F...F`)
  c  `indexcache`, a pattern through our flag (default FSSSFSSSFSSS: 1/4 of indexers)
  d  upstream native sharing with that pattern (`--json-model-override-args`
     '{"indexer_types": null, "index_topk_pattern": ...}')

Each runs SGLang's own `sglang.benchmark.one_batch` (dummy weights, no server) in a
subprocess, with our plugin loaded (one_batch does not load plugins itself). Prefill:
batch 1 at each context length, every length repeated, median reported. Decode: median
step latency and tokens/s of one batch of concurrent requests at one context length.
Results go to a JSON file with the commands, GPU, versions and KV pool sizes.

    python -m sglang_indexcache.bench run --out bench-out --phase prefill
    python -m sglang_indexcache.bench run --out bench-out --phase decode
    python -m sglang_indexcache.bench report bench-out/results.json --png bench-out/prefill.png
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

DEFAULT_PATTERN = "FSSSFSSSFSSS"
BASE_ARGS = [
    "--load-format", "dummy",
    "--dtype", "bfloat16",
    "--dsa-prefill-backend", "flashmla_sparse",
    "--dsa-decode-backend", "flashmla_sparse",
]


def configs(num_layers: int, pattern: str) -> dict:
    full = json.dumps({"indexer_types": ["full"] * num_layers})
    native = json.dumps({"indexer_types": None, "index_topk_pattern": pattern})
    return {
        "a": {"label": "dsa, all Full", "args": ["--attention-backend", "dsa", "--json-model-override-args", full]},
        "b": {"label": "indexcache, all Full", "args": ["--attention-backend", "indexcache", "--index-cache-pattern", "F" * num_layers]},
        "c": {"label": f"indexcache, {pattern}", "args": ["--attention-backend", "indexcache", "--index-cache-pattern", pattern]},
        "d": {"label": f"dsa native sharing, {pattern}", "args": ["--attention-backend", "dsa", "--json-model-override-args", native]},
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("sglang", "sglang-kernel", "torch", "triton", "flashinfer-python", "sgl-flash-mla", "sgl-deep-gemm", "sglang-indexcache"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _gpu() -> dict:
    import torch

    info = {"name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    info["cuda"] = torch.version.cuda
    return info


def dense_prefill_env() -> dict:
    """Without FA3 (the offline bundle strips sglang-kernel's 1.1 GB FA3 library), SGLang's
    DSA backend must not pick its dense MHA path for short prefills: threshold 0 keeps
    every prefill on sparse MLA (FlashMLA). Empty when FA3 is importable."""
    try:
        import sgl_kernel.flash_attn  # noqa: F401

        return {}
    except Exception:
        return {"SGLANG_DSA_PREFILL_DENSE_ATTN_KV_LEN_THRESHOLD": "0"}


def _one_batch(cmd_args: list, log: Path, result_file: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "sglang_indexcache.bench", "one-batch", *cmd_args, "--result-filename", str(result_file)]
    if result_file.exists():
        result_file.unlink()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, **dense_prefill_env()})
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"one_batch failed ({proc.returncode}); {log}:\n" + "\n".join(text.splitlines()[-30:]))
    pool = re.findall(r"max_total_num_tokens=(\d+)", text)
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    return {"command": " ".join(cmd), "kv_pool_tokens": int(pool[-1]) if pool else None, "rows": rows}


def run(args) -> int:
    from sglang_indexcache.tiny_model import make_shape

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    if not (model / "config.json").exists():
        make_shape("glm-4.7-flash", model, num_layers=args.num_layers, num_heads=args.num_heads)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.update({
        "model": f"GLM-4.7-Flash shape with DSA, {args.num_layers} layers, {args.num_heads} heads, dummy bf16 weights",
        "pattern": args.pattern,
        "gpu": _gpu(),
        "versions": _versions(),
        "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]]),
        "env": dense_prefill_env(),
    })
    results.setdefault("configs", {})
    cfgs = configs(args.num_layers, args.pattern)
    for key in args.configs:
        cfg = cfgs[key]
        entry = results["configs"].setdefault(key, {"label": cfg["label"]})
        common = ["--model-path", str(model), *BASE_ARGS, *cfg["args"], "--run-name", key]
        if args.phase in ("prefill", "all"):
            lens = [str(n) for n in args.lengths] * args.repeats
            r = _one_batch(
                [*common, "--mem-fraction-static", str(args.mem_fraction), "--batch-size", "1",
                 "--input-len", *lens, "--output-len", str(args.prefill_output_len)],
                out / f"{key}-prefill.log", out / f"{key}-prefill.jsonl", args.timeout,
            )
            per_len = {}
            for row in r["rows"]:
                per_len.setdefault(str(row["input_len"]), []).append(row["prefill_latency"])
            entry["prefill"] = {
                "command": r["command"], "kv_pool_tokens": r["kv_pool_tokens"],
                "latency_s": {n: {"median": statistics.median(v), "all": v} for n, v in per_len.items()},
            }
            print(f"[{key}] prefill {cfg['label']}: " + ", ".join(
                f"{n}: {statistics.median(v):.4f} s" for n, v in per_len.items()) + f"; KV pool {r['kv_pool_tokens']} tokens", flush=True)
        if args.phase in ("decode", "all"):
            r = _one_batch(
                [*common, "--mem-fraction-static", str(args.decode_mem_fraction), "--batch-size", str(args.decode_batch),
                 "--input-len", str(args.decode_len), "--output-len", str(args.decode_steps)],
                out / f"{key}-decode.log", out / f"{key}-decode.jsonl", args.timeout,
            )
            row = r["rows"][-1]
            entry["decode"] = {
                "command": r["command"], "kv_pool_tokens": r["kv_pool_tokens"],
                "batch_size": args.decode_batch, "context": args.decode_len, "steps": args.decode_steps,
                "median_step_s": row["median_decode_latency"], "tokens_per_s": row["median_decode_throughput"],
            }
            print(f"[{key}] decode {cfg['label']}: bs {args.decode_batch} at {args.decode_len}: "
                  f"{row['median_decode_latency'] * 1e3:.2f} ms/step, {row['median_decode_throughput']:.1f} tok/s; "
                  f"KV pool {r['kv_pool_tokens']} tokens", flush=True)
        results["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    results["ratios"] = ratios(results)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


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
    dec = {k: v["decode"]["tokens_per_s"] for k, v in c.items() if "decode" in v}
    if dec:
        row = {}
        if "a" in dec and "b" in dec:
            row["b_over_a_tokens_per_s"] = dec["b"] / dec["a"]
        if "c" in dec and "d" in dec:
            row["c_over_d_tokens_per_s"] = dec["c"] / dec["d"]
        if "a" in dec and "c" in dec:
            row["c_over_a_tokens_per_s"] = dec["c"] / dec["a"]
        out["decode"] = row
    pools = {k: v.get("prefill", v.get("decode", {})).get("kv_pool_tokens") for k, v in c.items()}
    if pools.get("c") and pools.get("d"):
        out["kv_pool_c_over_d"] = pools["c"] / pools["d"]
    if pools.get("a") and pools.get("c"):
        out["kv_pool_c_over_a"] = pools["c"] / pools["a"]
    return out


def table(results: dict) -> str:
    c = results.get("configs", {})
    lines = [f"model: {results.get('model')}; GPU: {results.get('gpu', {}).get('name')}"]
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
        lines.append(f"decode, batch {any_d['batch_size']} at {any_d['context']} tokens, median:")
        for k, d in sorted(dec.items()):
            lines.append(f"  {k} {c[k]['label']:<34} {d['median_step_s'] * 1e3:8.2f} ms/step {d['tokens_per_s']:9.1f} tok/s")
    pools = {k: v.get("prefill", v.get("decode", {})).get("kv_pool_tokens") for k, v in c.items()}
    lines.append("KV pool tokens: " + ", ".join(f"{k}={v}" for k, v in sorted(pools.items())))
    return "\n".join(lines)


def report(args) -> int:
    results = json.loads(Path(args.results).read_text())
    results["ratios"] = ratios(results)
    print(table(results))
    if args.png:
        plot(results, Path(args.png))
        print(f"wrote {args.png}")
    return 0


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = results["configs"]
    dec = [(k, c[k]["decode"]["tokens_per_s"]) for k in sorted(c) if "decode" in c[k]]
    fig, axes = plt.subplots(1, 3 if dec else 2, figsize=(15 if dec else 11, 4))
    ax = axes[0]
    for k in sorted(c):
        lat = c[k].get("prefill", {}).get("latency_s", {})
        if lat:
            xs = sorted(lat, key=int)
            ax.plot([int(x) // 1024 for x in xs], [lat[x]["median"] for x in xs], marker="o", label=f"{k}: {c[k]['label']}")
    ax.set_xlabel("context (K tokens)")
    ax.set_ylabel("prefill latency, batch 1 (s)")
    ax.set_title("prefill (median)")
    ax.legend(fontsize=7)
    ax = axes[1]
    base = c.get("a", {}).get("prefill", {}).get("latency_s", {})
    for k in sorted(c):
        lat = c[k].get("prefill", {}).get("latency_s", {})
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
        ax = axes[2]
        ax.bar([k for k, _ in dec], [v for _, v in dec])
        d0 = c[dec[0][0]]["decode"]
        ax.set_title(f"decode, batch {d0['batch_size']} at {d0['context'] // 1024}K")
        ax.set_ylabel("tokens/s (median step)")
    fig.suptitle(f"{results.get('model')} on {results.get('gpu', {}).get('name')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def one_batch_main(argv: list) -> int:
    """SGLang's one_batch with plugins loaded (it does not load them itself)."""
    from sglang.srt.plugins import load_plugins

    load_plugins()
    from sglang.benchmark import one_batch

    sys.argv = ["sglang.benchmark.one_batch", *argv]
    one_batch.cli_main()
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "one-batch":
        return one_batch_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m sglang_indexcache.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the side-by-side benchmark (needs a CUDA GPU)")
    r.add_argument("--out", required=True)
    r.add_argument("--phase", choices=("prefill", "decode", "all"), default="all")
    r.add_argument("--configs", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    r.add_argument("--pattern", default=DEFAULT_PATTERN)
    r.add_argument("--num-layers", type=int, default=12)
    r.add_argument("--num-heads", type=int, default=32)
    r.add_argument("--lengths", type=int, nargs="+", default=[16384, 65536, 131072])
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--prefill-output-len", type=int, default=8)
    r.add_argument("--mem-fraction", type=float, default=0.8)
    r.add_argument("--decode-batch", type=int, default=16)
    r.add_argument("--decode-len", type=int, default=65536)
    r.add_argument("--decode-steps", type=int, default=64)
    r.add_argument("--decode-mem-fraction", type=float, default=0.5)
    r.add_argument("--timeout", type=float, default=900)
    r.set_defaults(fn=run)
    rep = sub.add_parser("report", help="print the table (and plot) of a results file")
    rep.add_argument("results")
    rep.add_argument("--png")
    rep.set_defaults(fn=report)
    args = p.parse_args(argv)
    if getattr(args, "pattern", None) and len(args.pattern) != args.num_layers:
        p.error(f"--pattern has {len(args.pattern)} layers, the model {args.num_layers}")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
