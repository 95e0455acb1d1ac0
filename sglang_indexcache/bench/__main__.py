"""`python -m sglang_indexcache.bench`: see the package docstring."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
from pathlib import Path

from sglang_indexcache.bench import (agentic, agentic_runs, compact, decode, fpm, pp, prefill, pyspy, report, search, topk,
                                     trace, ttft_split, turn)
from sglang_indexcache.bench.common import (
    BASE_ARGS, CPU_ARGS, DEFAULT_PATTERN, HEADROOM_GIB, MULTI_GPU_ENV, SHAPES, configs, dense_prefill_env, gpu_info,
    gpu_total_bytes, inherited_env, mem_fraction_for, server_env_arg, tp_args, versions,
)


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
        # --mtp needs a NextN (draft) layer: GLM-4.7-Flash declares one
        nextn = 1 if args.mtp else 0
        model = out / ("model-nextn" if nextn else "model")
        if not (model / "config.json").exists():
            make_shape("glm-4.7-flash", model, num_layers=args.num_layers, num_heads=args.num_heads,
                       overrides={"num_nextn_predict_layers": nextn})
        model_label = (f"GLM-4.7-Flash shape with DSA, {args.num_layers} layers, {args.num_heads} heads"
                       f"{', one NextN layer' if nextn else ''}, dummy bf16 weights")
    if args.device != "cuda" and (args.phase != "decode" or set(args.configs) - {"b", "c"}):
        raise SystemExit("--device cpu runs only --phase decode with --configs b c (upstream dsa needs CUDA)")
    if args.tp_size > 1 and (args.phase != "decode" or args.device != "cuda"):
        raise SystemExit("--tp-size runs --phase decode on CUDA GPUs only (prefill is measured with one_batch on one GPU)")
    base_args = [*(BASE_ARGS if args.device == "cuda" else CPU_ARGS), *tp_args(args.tp_size)]
    server_env = MULTI_GPU_ENV if args.tp_size > 1 else {}
    extra_env = server_env_arg(args.server_env)
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
        "gpu": gpu_info() if args.device == "cuda" else None,
        "versions": versions(),
        "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]]),
        "env": {**inherited_env(), **dense_prefill_env(), **server_env, **extra_env},
        "tp_size": args.tp_size,
    })
    results.setdefault("configs", {})
    cfgs = configs(args.num_layers, args.pattern)
    for key in args.configs:
        cfg = cfgs[key]
        entry = results["configs"].setdefault(key, {"label": cfg["label"]})
        common_args = ["--model-path", str(model), *base_args, *cfg["args"], "--run-name", key]
        if args.phase in ("prefill", "all"):
            entry["prefill"] = prefill.measure(key, common_args, args, out)
            per_len = {n: v["median"] for n, v in entry["prefill"]["latency_s"].items()}
            print(f"[{key}] prefill {cfg['label']}: " + ", ".join(f"{n}: {v:.4f} s" for n, v in per_len.items())
                  + f"; KV pool {entry['prefill']['kv_pool_tokens']} tokens", flush=True)
        if args.phase in ("decode", "all"):
            d = decode.serve_decode(model, [*base_args, *cfg["args"], *shlex.split(args.server_args)], args,
                                    out / f"{key}-decode.log", env={**server_env, **extra_env})
            entry["decode"] = d
            print(f"[{key}] decode {cfg['label']}: bs {d['batch_size']} at {d['context']}: "
                  f"{d['tokens_per_s']:.1f} tok/s ({d['ms_per_step']:.2f} ms/step), SGLang log median "
                  f"{d['log_gen_throughput_median']} tok/s; KV pool {d['kv_pool_tokens']} tokens", flush=True)
        results["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    results["ratios"] = report.ratios(results)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "one-batch":
        return prefill.one_batch_main(argv[1:])
    import sglang_indexcache.bench as pkg

    p = argparse.ArgumentParser(prog="python -m sglang_indexcache.bench", description=pkg.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("agentic", help="agentic sessions through SGLang's bench_serving, side by side")
    g.add_argument("--out", required=True)
    g.add_argument("--shape", choices=sorted(SHAPES), help="generate this model shape (dummy weights)")
    g.add_argument("--model-path", help="an existing model folder instead of --shape")
    g.add_argument("--configs", nargs="+", default=["a", "d", "c", "e", "f"], choices=list("abcdefikmnpu"),
                   help="as turn's: k, m: b and c with SGLang's v2 top-k set (the default); n, p: also the paged "
                        "route at --paged-rows; u: c with SGLang's own top-k (c before session 21); "
                        "i: dsa with the pattern as indexer_types (c's model config without our backend)")
    g.add_argument("--paged-rows", type=int, default=128, help="SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS of configs n and p")
    g.add_argument("--pattern", help="config c/d pattern (default: the shape's)")
    g.add_argument("--low", help="config e pattern (default: the shape's)")
    g.add_argument("--searched", help="config f pattern (default: the shape's)")
    g.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    g.add_argument("--min-sessions", type=int, default=2, help="sessions replayed at a concurrency below this")
    g.add_argument("--repeats", type=int, default=1,
                   help="replays per concurrency on each server (figures: medians over them, with their spread)")
    g.add_argument("--servers", type=int, default=1,
                   help="servers per configuration, started in turn (a, c, d, a, c, d, ...): figures are medians "
                        "over every run on every server (the host's speed differs from one server to the next)")
    g.add_argument("--trace", help="a trace file (default: OUT/trace.json, generated if missing)")
    g.add_argument("--size", default="128k", choices=sorted(trace.SIZES), help="trace size when generating")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mtp", action="store_true", help="EAGLE over the model's NextN layer in every config")
    g.add_argument("--prefill-graphs", choices=["sglang", "off"], default="sglang",
                   help="sglang: SGLang's default (CUDA: breakable prefill graphs, replayed by extends of up to "
                        "8,192 tokens for MLA models; minutes of capture per server); off: eager extends (the runs "
                        "up to session 15)")
    g.add_argument("--profile-probe", action="store_true",
                   help="one more token-id request of each server's probe under SGLang's profiler (the kernel "
                        "table in the probe's entry, the trace under OUT/profiles/)")
    g.add_argument("--forward-pass-metrics", action="store_true",
                   help="every forward's GPU span from SGLang's --enable-forward-pass-metrics (bench/fpm.py): "
                        "per run, `gpu_spans` in the JSON and the messages in NAME-fpm.jsonl.gz")
    g.add_argument("--py-spy", action="store_true",
                   help="sample the server's scheduler processes with py-spy during each timed replay (bench/pyspy.py): "
                        "per run, `py_spy` in the JSON and the Python stacks in NAME-pyspy.txt.gz")
    g.add_argument("--mem-fraction", type=float, default=None,
                   help=f"default: leave {HEADROOM_GIB} GiB of the GPU outside the pool")
    g.add_argument("--chunked-prefill-size", type=int, default=16384)
    g.add_argument("--device", default="cuda", help="cpu: a smoke run of indexcache configs on a tiny model")
    g.add_argument("--timeout", type=float, default=1800)
    g.set_defaults(fn=agentic.run)

    t = sub.add_parser("trace", help="write an agentic trace (SGLang's agentic-trace format)")
    t.add_argument("--tokenizer", required=True, help="a model folder with the tokenizer to count with")
    t.add_argument("--size", default="128k", choices=sorted(trace.SIZES))
    t.add_argument("--sessions", type=int, default=16)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    t.set_defaults(fn=lambda a: print(json.dumps(trace.write_trace(
        a.tokenizer, trace.spec_for(a.size, a.sessions, a.seed), Path(a.out)), indent=1)) or 0)

    u = sub.add_parser("turn", help="one turn on a long cached prefix, timed and profiled (SGLang's profiler)")
    u.add_argument("--out", required=True)
    u.add_argument("--shape", choices=sorted(SHAPES), default="flash-12")
    u.add_argument("--model-path", help="an existing folder of --shape's model (default: generated under OUT)")
    u.add_argument("--configs", nargs="+", default=["a", "b", "c", "g"], choices=list("abcdefgkmnpu"),
                   help="as agentic's; g: indexcache with one Full layer; k, m: b and c with SGLang's v2 top-k "
                        "in PAGED extends set (the default); n, p: k and m with short extends on the paged logits "
                        "kernel; u: c with SGLang's own top-k")
    u.add_argument("--paged-rows", type=int, default=128,
                   help="SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS of configs n and p (session 12 ran 8192: every size)")
    u.add_argument("--pattern", help="config c/d pattern (default: the shape's)")
    u.add_argument("--context", type=int, default=122880, help="cached prefix, tokens")
    u.add_argument("--new", type=int, nargs="+", default=[1, 2048, 8192], help="new tokens per turn")
    u.add_argument("--prefill-graphs", choices=("off", "sglang"), default="off",
                   help="off: eager turns (sessions 12, 13); sglang: SGLang's default breakable prefill graphs, "
                        "as the agentic servers run")
    u.add_argument("--warm-decode", type=int, default=0, metavar="N",
                   help="first a short request that decodes N tokens (an agentic server has decoded before "
                        "its turns; a turn server otherwise never runs a decode step)")
    u.add_argument("--repeats", type=int, default=5)
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--mem-fraction", type=float, default=None,
                   help=f"default: leave {HEADROOM_GIB} GiB of the GPU outside the pool")
    u.add_argument("--chunked-prefill-size", type=int, default=16384)
    u.add_argument("--timeout", type=float, default=900)
    u.add_argument("--device", default="cuda", help="cpu: a smoke run of indexcache configs on a tiny model")
    u.add_argument("--server-args", default="", help="more flags for every server, e.g. '--kv-cache-dtype fp8_e4m3'")
    u.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment of every server, e.g. SGLANG_DSA_FUSE_TOPK=0 (recorded in the results)")
    u.set_defaults(fn=turn.run)

    q = sub.add_parser("pp", help="pipeline parallel (PP 2): each stage-boundary handoff side by side")
    q.add_argument("--out", required=True)
    q.add_argument("--shape", choices=sorted(SHAPES), default="flash-12")
    q.add_argument("--model-path", help="an existing model folder instead of --shape's")
    q.add_argument("--configs", nargs="+", default=list(pp.CONFIG_KEYS), choices=list(pp.CONFIG_KEYS))
    q.add_argument("--pattern", help="default: the shape's (flash-12: stage 1 starts on a Shared layer)")
    q.add_argument("--pp-size", type=int, default=2)
    q.add_argument("--lengths", type=int, nargs="*", default=[16384, 65536, 131072],
                   help="prefill prompt lengths; none: the decode point only")
    q.add_argument("--repeats", type=int, default=3)
    q.add_argument("--decode-batch", type=int, default=16, help="the decode point; 0: none")
    q.add_argument("--decode-len", type=int, default=32768)
    q.add_argument("--decode-steps", type=int, default=320)
    q.add_argument("--decode-short", type=int, default=64)
    q.add_argument("--decode-repeats", type=int, default=3)
    q.add_argument("--mem-fraction", type=float, default=None,
                   help=f"default: leave {HEADROOM_GIB} GiB of the GPU outside the pool")
    q.add_argument("--chunked-prefill-size", type=int, default=16384)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="cuda", help="cpu: a smoke run of the c-* configs on a tiny model")
    q.add_argument("--timeout", type=float, default=900)
    q.set_defaults(fn=pp.run)

    k = sub.add_parser("topk", help="the indexer's top-k kernels (SGLang's, FlashInfer's) on one GPU")
    k.add_argument("--out", required=True)
    k.add_argument("--rows", type=int, nargs="+", default=[1, 2048, 8192], help="new tokens (query rows)")
    k.add_argument("--prefix", type=int, default=122880, help="cached keys every row sees")
    k.add_argument("--k", type=int, default=2048)
    k.add_argument("--dist", nargs="+", default=["indexer"], choices=topk.DISTS)
    k.add_argument("--impls", nargs="+", help=f"default: all of {', '.join(topk.IMPLS)} on CUDA, torch on CPU")
    k.add_argument("--repeats", type=int, default=20)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--device", default="cuda", help="cpu: a smoke run (torch only)")
    k.set_defaults(fn=topk.run)

    s = sub.add_parser("search", help="the pattern search's cost: one switchable server against a server per candidate")
    s.add_argument("--out", required=True)
    s.add_argument("--shape", choices=sorted(SHAPES), default="glm-5.2-tp8")
    s.add_argument("--model-path", help="an existing model folder instead of --shape's")
    s.add_argument("--calib-tokens", type=int, default=65536, help="calibration tokens (random ids)")
    s.add_argument("--seq-len", type=int, default=8192, help="tokens per calibration sequence")
    s.add_argument("--candidates", type=int, default=6, help="evaluations timed on the switchable server")
    s.add_argument("--restarts", type=int, default=2, help="evaluations timed with a server per candidate")
    s.add_argument("--target", type=float, default=0.25, help="the projected search's retention (or Full count)")
    s.add_argument("--mem-fraction", type=float, default=None,
                   help=f"default: leave {HEADROOM_GIB} GiB of the GPU outside the pool")
    s.add_argument("--chunked-prefill-size", type=int, default=16384)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cuda", help="cpu: a smoke run on a tiny model (--model-path)")
    s.set_defaults(fn=search.run)

    r = sub.add_parser("run", help="prefill (one_batch) and decode side by side (the paper's table)")
    r.add_argument("--out", required=True)
    r.add_argument("--phase", choices=("prefill", "decode", "all"), default="all")
    r.add_argument("--configs", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d", "i"],
                   help="i: dsa with the pattern as indexer_types (a control for c)")
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
    r.add_argument("--mtp", action="store_true", help="decode with EAGLE over the model's NextN layer (without --model-path: the shape with one NextN layer)")
    r.add_argument("--tp-size", type=int, default=1, help="decode on this many GPUs, tensor-parallel (every config)")
    r.add_argument("--profile-steps", type=int, default=0,
                   help="decode: profile this many scheduler steps (SGLang's profiler) after the timed runs")
    r.add_argument("--profile-stack", action="store_true",
                   help="decode: the profile records Python functions too (host time by function)")
    r.add_argument("--prefill-graphs", choices=("off", "sglang"), default="off",
                   help="decode: sglang keeps SGLang's default breakable prefill graphs (as `agentic` runs)")
    r.add_argument("--server-args", default="", help="decode: more flags for every server, e.g. '--enable-metrics'")
    r.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="decode: environment of every server (recorded in the results)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cuda", help="cpu only for a smoke run of configs b/c on a tiny model")
    r.add_argument("--model-path", help="an existing model instead of the generated GLM-4.7-Flash shape")
    r.add_argument("--timeout", type=float, default=900)
    r.set_defaults(fn=run)

    mg = sub.add_parser("merge", help="agentic results files of separate invocations as one (each one server per config)")
    mg.add_argument("results", nargs="+", help="results.json files, in the order their servers ran")
    mg.add_argument("--out", required=True, help="folder for the merged results.json")
    mg.add_argument("--png")
    mg.set_defaults(fn=agentic_runs.merge_cmd)

    cp = sub.add_parser("compact", help="bench_serving's per-request files, itls rounded to 1 us and gzipped, to commit")
    cp.add_argument("files", nargs="+", help="FILE.jsonl (becomes FILE.jsonl.gz) or FILE.jsonl.gz (rewritten)")
    cp.set_defaults(fn=compact.compact_cmd)

    sp = sub.add_parser("spans", help="agentic --forward-pass-metrics files: GPU spans of prefill and decode, per run")
    sp.add_argument("files", nargs="+", help="STEM-fpm.jsonl.gz files")
    sp.set_defaults(fn=fpm.spans_cmd)

    sl = sub.add_parser("split", help="agentic replays' TTFT split: the scheduler's queue and prefill, and the time "
                                      "outside it (client, HTTP, chat template, tokenization, hand-over)")
    sl.add_argument("files", nargs="+", help="bench_serving files (TAG-cN.jsonl[.gz]), each beside its TAG-server.log[.gz]")
    sl.set_defaults(fn=ttft_split.table_cmd)

    ps = sub.add_parser("pyspy", help="agentic --py-spy files side by side: the scheduler's running time per function")
    ps.add_argument("files", nargs="+", help="STEM-pyspy.txt.gz files")
    ps.add_argument("--top", type=int, default=20)
    ps.set_defaults(fn=pyspy.table_cmd)

    rep = sub.add_parser("report", help="print the table (and plot) of a results file")
    rep.add_argument("results")
    rep.add_argument("--png")
    rep.set_defaults(fn=report.report_cmd)
    args = p.parse_args(argv)
    if args.cmd == "run" and len(args.pattern) != args.num_layers:
        p.error(f"--pattern has {len(args.pattern)} layers, the model {args.num_layers}")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
