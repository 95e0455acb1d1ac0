"""Prefill and decode side by side: SGLang's `dsa` backend against `indexcache` (CUDA GPU).

Four configurations of one model, run one after another in one invocation:
  a  upstream `dsa`, every layer Full
  b  `indexcache`, every layer Full (`--index-cache-pattern F...F`)
  c  `indexcache`, a pattern through our flag (default FSSSFSSSFSSS: 1/4 of indexers)
  d  upstream native sharing with that pattern (`--json-model-override-args`
     '{"indexer_types": null, "index_topk_pattern": ...}')

Prefill: SGLang's own `sglang.benchmark.one_batch` (dummy weights, no server) in a
subprocess with our plugin loaded (one_batch does not load plugins itself); batch 1 at
each context length, every length repeated, median reported.

Decode: a real server per configuration (`python -m sglang.launch_server`, chunked
prefill, CUDA graphs). one_batch cannot do it: it prefills the whole batch in one forward
(16 x 64K tokens needs a 32 GiB indexer logits buffer). The server gets B prompts of L
random tokens as one batched `/generate` (max_new_tokens 1, which leaves them in the
radix cache), then the same B prompts again with a short and a long max_new_tokens (64
and 1088 by default), alternating, several times. Every timed request must hit the radix
cache for its whole prompt but the last page (64 tokens with DSA), so the time is decode.
Two figures per configuration:
  * SGLang's own `gen throughput` log lines with B running requests, median over the
    long runs (a line that spans the pause between two batches reads low; the median
    absorbs it). On an H200 its inter-quartile range was 0.4% (all-Full) to 4% (1/4).
  * wall-clock: B x (long - short) / (median time long - median time short), which
    cancels the HTTP and the extend of the last page but keeps a few % of timing noise.
Results go to a JSON file with the commands, GPU, versions and KV pool sizes. The first
server on a fresh machine spends minutes in kernel JIT during graph capture.

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
# --device cpu: a smoke run of the decode path (configs b and c; upstream dsa has no CPU path)
CPU_ARGS = ["--dtype", "float32", "--sleep-on-idle"]


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


# Memory left outside SGLang's static pool (weights + KV) for activations, the indexer's
# logits and FlashMLA's workspace. Measured: a 128K prefill of the 12-layer Flash shape ran
# out of memory with 36 GB left (H100 80 GB at 0.55: `Tried to allocate 8.00 GiB` in
# flash_mla_sparse_fwd) and with 28 GB (H200 at 0.8), and ran with 56 GB (H100 at 0.3) and 63 GB
# (H200 at 0.55). So: static fraction = (total - 56 GiB) / total, within [0.1, 0.9]:
# 0.30 on an 80 GB H100, 0.60 on a 141 GB H200.
HEADROOM_GIB = 56


def mem_fraction_for(total_bytes: int, headroom_gib: float = HEADROOM_GIB) -> float:
    """`--mem-fraction-static` that leaves `headroom_gib` of a GPU of `total_bytes` outside the pool."""
    frac = (total_bytes - headroom_gib * 2**30) / total_bytes
    return round(min(0.9, max(0.1, frac)), 2)


def gpu_total_bytes() -> int:
    """Memory of GPU 0 as nvidia-smi reports it (no CUDA context in this process)."""
    smi = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, timeout=30, check=True)
    return int(smi.stdout.split()[0]) * 2**20  # MiB


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


DECODE_LINE = re.compile(
    r"Decode batch.*?#running-req: (\d+),.*?graph: (True|False), gen throughput \(token/s\): ([0-9.]+)")


def decode_log_lines(text: str, batch: int) -> dict:
    """SGLang's own decode log lines with `batch` running requests: gen throughput values
    and how many of those steps ran under a CUDA graph."""
    rows = [(int(n), g == "True", float(t)) for n, g, t in DECODE_LINE.findall(text)]
    full = [r for r in rows if r[0] == batch and r[2] > 0]
    return {"lines": len(full), "graph_lines": sum(r[1] for r in full), "gen_throughput": [r[2] for r in full]}


def serve_decode(model: Path, cfg_args: list, args, log: Path) -> dict:
    """Decode tokens/s of `args.decode_batch` concurrent requests at `args.decode_len`
    tokens of context on a real server (see the module docstring)."""
    import random
    import time

    from sglang_indexcache.server import Server, ServerError

    B, L = args.decode_batch, args.decode_len
    short, long_ = args.decode_short, args.decode_steps
    if long_ <= short:
        raise ValueError(f"--decode-steps ({long_}) must be larger than --decode-short ({short})")
    vocab = json.loads((Path(model) / "config.json").read_text())["vocab_size"]
    rng = random.Random(args.seed)
    prompts = [[rng.randrange(100, vocab - 100) for _ in range(L)] for _ in range(B)]
    server_args = [
        *cfg_args,
        "--mem-fraction-static", str(args.decode_mem_fraction),
        "--max-running-requests", str(B),
        "--chunked-prefill-size", str(args.chunked_prefill_size),
        "--decode-log-interval", str(args.decode_log_interval),
        "--context-length", str(L + long_ + 64),
    ]
    if args.device == "cuda":
        # decode steps replay decode CUDA graphs; prefill graphs (breakable, every token
        # count up to the chunk size) cost 187 s of capture per server on the H200 and
        # take no part in what is timed here
        server_args += ["--cuda-graph-max-bs-decode", str(B), "--cuda-graph-backend-prefill", "disabled"]
    srv = Server(model, server_args, log=log, device=args.device, startup_timeout=args.timeout)
    env_extra = dense_prefill_env() if args.device == "cuda" else {}
    srv.env.update(env_extra)

    def batch(n: int) -> tuple:
        body = {"input_ids": prompts,
                "sampling_params": {"max_new_tokens": n, "temperature": 0.0, "ignore_eos": True}}
        t0 = time.perf_counter()
        out = srv.post("/generate", body, timeout=args.timeout)
        dt = time.perf_counter() - t0
        if len(out) != B or any(len(o["output_ids"]) != n for o in out):
            raise ServerError(f"expected {B} outputs of {n} tokens")
        return dt, out

    with srv:
        t_prefill, _ = batch(1)
        # the radix cache matches whole pages (DSA runs with page size 64)
        page = int((re.findall(r"'page_size': (\d+)", log.read_text(errors="replace")) or [1])[0])
        must_hit = (L - 1) // page * page
        times = {short: [], long_: []}
        long_logs = []  # SGLang's decode log lines of the long runs only
        for _ in range(args.decode_repeats):
            for n in (short, long_):
                mark = len(log.read_text(errors="replace"))
                dt, out = batch(n)
                if n == long_:
                    time.sleep(0.5)  # let the last log line reach the file
                    long_logs.append(log.read_text(errors="replace")[mark:])
                cached = min(o["meta_info"]["cached_tokens"] for o in out)
                if cached < must_hit:
                    raise ServerError(f"a timed request recomputed its prompt (cached {cached}, expected {must_hit} of {L}): "
                                      "the KV pool is too small for the batch; lower --decode-batch or raise "
                                      "--decode-mem-fraction")
                times[n].append(dt)
        text = log.read_text(errors="replace")
    pool = re.findall(r"max_total_num_tokens=(\d+)", text)
    logged = decode_log_lines("".join(long_logs), B)
    t_s, t_l = statistics.median(times[short]), statistics.median(times[long_])
    step = (t_l - t_s) / (long_ - short)
    if step <= 0:
        raise ServerError(f"{long_} steps took no longer than {short} ({t_l:.3f} s vs {t_s:.3f} s): "
                          "timing noise exceeds the decode time; raise --decode-steps")
    return {
        "command": " ".join(srv.cmd), "env": env_extra, "kv_pool_tokens": int(pool[-1]) if pool else None,
        "batch_size": B, "context": L, "short": short, "steps": long_, "repeats": args.decode_repeats,
        "prefill_s": t_prefill, "times_s": {str(k): v for k, v in times.items()},
        "ms_per_step": step * 1e3, "tokens_per_s": B / step,
        "log_gen_throughput_median": statistics.median(logged["gen_throughput"]) if logged["gen_throughput"] else None,
        "log_lines": logged["lines"], "log_graph_lines": logged["graph_lines"],
    }


def run(args) -> int:
    from sglang_indexcache.tiny_model import make_shape

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model_path:
        model = Path(args.model_path)
        model_label = str(model)
        layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
        if layers != args.num_layers:
            raise SystemExit(f"{model} has {layers} layers; pass --num-layers {layers} and a pattern of that length")
    else:
        model = out / "model"
        if not (model / "config.json").exists():
            make_shape("glm-4.7-flash", model, num_layers=args.num_layers, num_heads=args.num_heads)
        model_label = f"GLM-4.7-Flash shape with DSA, {args.num_layers} layers, {args.num_heads} heads, dummy bf16 weights"
    if args.device != "cuda" and (args.phase != "decode" or set(args.configs) - {"b", "c"}):
        raise SystemExit("--device cpu runs only --phase decode with --configs b c (upstream dsa needs CUDA)")
    base_args = BASE_ARGS if args.device == "cuda" else CPU_ARGS
    if args.device == "cuda" and None in (args.mem_fraction, args.decode_mem_fraction):
        auto = mem_fraction_for(gpu_total_bytes())
        args.mem_fraction = auto if args.mem_fraction is None else args.mem_fraction
        args.decode_mem_fraction = auto if args.decode_mem_fraction is None else args.decode_mem_fraction
        print(f"--mem-fraction-static {args.mem_fraction} (prefill), {args.decode_mem_fraction} (decode): "
              f"{HEADROOM_GIB} GiB of the GPU left outside the pool", flush=True)
    if args.decode_mem_fraction is None:  # --device cpu: the pool comes from host RAM; the old default
        args.decode_mem_fraction = 0.6
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.update({
        "model": model_label,
        "pattern": args.pattern,
        "gpu": _gpu() if args.device == "cuda" else None,
        "versions": _versions(),
        "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]]),
        "env": dense_prefill_env(),
    })
    results.setdefault("configs", {})
    cfgs = configs(args.num_layers, args.pattern)
    for key in args.configs:
        cfg = cfgs[key]
        entry = results["configs"].setdefault(key, {"label": cfg["label"]})
        common = ["--model-path", str(model), *base_args, *cfg["args"], "--run-name", key]
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
            d = serve_decode(model, [*base_args, *cfg["args"]], args, out / f"{key}-decode.log")
            entry["decode"] = d
            print(f"[{key}] decode {cfg['label']}: bs {d['batch_size']} at {d['context']}: "
                  f"{d['tokens_per_s']:.1f} tok/s ({d['ms_per_step']:.2f} ms/step), SGLang log median "
                  f"{d['log_gen_throughput_median']} tok/s; KV pool {d['kv_pool_tokens']} tokens", flush=True)
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
    # two decode figures per config: SGLang's own gen-throughput log (median over the long
    # runs; inter-quartile range 0.4-4% on the H200) and the wall-clock
    # differential (per-call HTTP timing, a few % of noise)
    for tag, field in (("log", "log_gen_throughput_median"), ("wallclock", "tokens_per_s")):
        dec = {k: v["decode"][field] for k, v in c.items() if v.get("decode", {}).get(field)}
        row = {}
        for x, y in (("b", "a"), ("c", "d"), ("c", "a"), ("c", "b"), ("d", "a")):
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
    lines = [f"model: {results.get('model')}; GPU: {(results.get('gpu') or {}).get('name')}"]
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
        lines.append(f"  {'':<38} {'SGLang log median':>18} {'wall-clock':>11}")
        for k, d in sorted(dec.items()):
            log = d.get("log_gen_throughput_median")
            lines.append(f"  {k} {c[k]['label']:<36} {log if log is not None else float('nan'):18.1f} {d['tokens_per_s']:11.1f}")
        for tag in ("log", "wallclock"):
            r = results.get("ratios", {}).get(f"decode_tokens_per_s_{tag}")
            if r:
                lines.append(f"  ratios ({tag}): " + ", ".join(f"{k.replace('_over_', '/')} {v:.3f}" for k, v in r.items()))
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
    pre = [k for k in sorted(c) if c[k].get("prefill", {}).get("latency_s")]
    dec = [k for k in sorted(c) if "decode" in c[k]]
    n = 2 * bool(pre) + bool(dec)
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
    fig.suptitle(f"{results.get('model')} on {(results.get('gpu') or {}).get('name')}", fontsize=9)
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
    r.add_argument("--repeats", type=int, default=4)
    r.add_argument("--prefill-output-len", type=int, default=8)
    r.add_argument("--mem-fraction", type=float, default=None,
                   help=f"prefill; default: leave {HEADROOM_GIB} GiB outside the pool (0.30 on an H100, 0.60 on an H200)")
    r.add_argument("--decode-batch", type=int, default=16)
    r.add_argument("--decode-len", type=int, default=65536)
    r.add_argument("--decode-steps", type=int, default=1088, help="long max_new_tokens of the timed decode")
    r.add_argument("--decode-short", type=int, default=64, help="short max_new_tokens of the timed decode")
    r.add_argument("--decode-repeats", type=int, default=5)
    r.add_argument("--decode-mem-fraction", type=float, default=None, help="decode; default as --mem-fraction")
    r.add_argument("--decode-log-interval", type=int, default=16)
    r.add_argument("--chunked-prefill-size", type=int, default=16384)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cuda", help="cpu only for a smoke run of configs b/c on a tiny model")
    r.add_argument("--model-path", help="an existing model instead of the generated GLM-4.7-Flash shape")
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
