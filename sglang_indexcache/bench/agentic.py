"""Agentic sessions through SGLang's own serving benchmark, one configuration after another.

For each configuration (`common.configs`) one server (`python -m sglang.launch_server`),
then, for each concurrency, `python -m sglang.benchmark.serving --backend sglang-oai-chat
--dataset-name agentic-trace` replays max(concurrency, --min-sessions) sessions of the
trace (`trace.py`) with `--max-concurrency` and an infinite request rate, the radix cache
flushed first (bench_serving's `--flush-cache`). Our own requests are only the few of
`probe.py` (one long turn through three doors, before the timed runs) and reads of the
server's `/metrics`.

bench_serving prints median/p90 TTFT, ITL, throughput and (with `--cache-report`) the hit
rate. It has no figure per turn: TTFT against the context length of the turn comes from
its per-request output (`--output-details --cache-report`: per round the server-reported
prompt length, TTFT, inter-token latencies and cached tokens), in the order bench_serving
flattens rounds (conversation by conversation, turn by turn); `turns()` pairs them with
the trace and fails if the counts disagree.

    python -m sglang_indexcache.bench agentic --out bench_results/agentic --shape flash-12
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sglang_indexcache.bench import common, fpm, pyspy, ttft_split
from sglang_indexcache.bench.agentic_report import LONG_CONTEXT, agentic_ratios, agentic_table
from sglang_indexcache.bench.agentic_runs import combine_runs, merge_servers
from sglang_indexcache.bench.decode import decode_log_lines
from sglang_indexcache.bench.probe import probe_turn, turn_probe
from sglang_indexcache.bench.server_metrics import metrics_now, server_side

# turn context bins for "TTFT against context length": [lo, hi) in tokens
BIN = 16384


def bench_serving_cmd(url: str, model: Path, trace: Path, sessions: int, concurrency: int, reply: int,
                      out_file: Path, *, max_turns: int | None = None) -> list:
    cmd = [sys.executable, "-m", "sglang.benchmark.serving",
           "--backend", "sglang-oai-chat", "--base-url", url, "--model", str(model), "--tokenizer", str(model),
           "--dataset-name", "agentic-trace", "--dataset-path", str(trace),
           "--num-prompts", str(sessions), "--max-concurrency", str(concurrency), "--request-rate", "inf",
           "--sharegpt-output-len", str(reply), "--warmup-requests", "0", "--flush-cache",
           "--output-file", str(out_file), "--output-details", "--cache-report", "--disable-tqdm",
           "--extra-request-body", json.dumps({"temperature": 0.0, "return_cached_tokens_details": True})]
    if max_turns:
        cmd += ["--agentic-max-turns", str(max_turns)]
    return cmd


def run_bench_serving(cmd: list, log: Path, out_file: Path, timeout: float) -> dict:
    if out_file.exists():
        out_file.unlink()  # bench_serving appends
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    text = log.read_text(errors="replace")
    if proc.returncode != 0 or not out_file.exists():
        raise RuntimeError(f"bench_serving failed ({proc.returncode}); {log}:\n" + "\n".join(text.splitlines()[-30:]))
    return common.bench_serving_result(out_file)


def turns(result: dict, trace: dict, sessions: int, max_turns: int | None = None) -> list:
    """One row per turn: session, turn, context (server's prompt tokens), cached, ttft, itl."""
    shape = [(s, t) for s, conv in enumerate(trace["conversations"][:sessions])
             for t in range(min(len(conv), max_turns or len(conv)))]
    n = len(result["ttfts"])
    if n != len(shape):
        raise RuntimeError(f"bench_serving returned {n} rounds, the trace has {len(shape)} for {sessions} sessions")
    rows = []
    for i, (s, t) in enumerate(shape):
        itl = result["itls"][i] or []
        rows.append({"session": s, "turn": t, "context": result["input_lens"][i],
                     "cached": (result.get("cached_tokens") or [0] * n)[i], "ttft_s": result["ttfts"][i],
                     "itl_median_s": statistics.median(itl) if itl else None,
                     "decode_s": sum(itl),  # the client's first to last token
                     "output_tokens": result["output_lens"][i], "error": result["errors"][i] or None})
    return rows


def working_set(trace: dict, sessions: int, concurrency: int) -> int:
    """Tokens the KV pool must hold for every live session's history to stay in the radix cache
    to the end of a replay of `sessions` sessions at `concurrency`: the `concurrency` largest last
    contexts (prompt and reply) among them, the shared system prompt counted once. A pool smaller
    than this evicts histories that a later turn re-prefills, so the replay then measures
    recomputation (session 36, flash-12 at concurrency 16: an H100 at fraction 0.3 held 574,336
    tokens against 2,040,320 needed; the 270 requests it finished in 151 s had 26 % of their prompt
    tokens cached, where an H200's 5.1M-token pool replayed all 401 turns in 50 s at 93 %)."""
    reply = trace["metadata"]["spec"]["reply_tokens"]
    last = sorted((conv[-1]["prompt_tokens"] + reply for conv in trace["conversations"][:sessions]), reverse=True)
    live = last[:concurrency]
    return sum(live) - (len(live) - 1) * trace["metadata"].get("system_tokens", 0)


def pool_short(pool: int | None, need: int, concurrency: int) -> str | None:
    """What a level will measure when the KV pool (`pool` tokens) cannot hold its `working_set`."""
    if pool is None or need <= pool:
        return None
    return (f"the KV pool holds {pool:,} tokens, the {concurrency} live sessions reach {need:,}: the radix cache "
            "will evict histories and later turns re-prefill them, so this level measures recomputation "
            "(a larger --mem-fraction or GPU, or a lower concurrency, keeps them)")


def _pct(values: list, q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(result: dict, rows: list, sessions: int) -> dict:
    ok = [r for r in rows if not r["error"]]
    by_bin = {}
    for r in ok:
        by_bin.setdefault(r["context"] // BIN * BIN, []).append(r["ttft_s"])
    long_ = [r["ttft_s"] for r in ok if r["context"] >= LONG_CONTEXT]
    first = [r["ttft_s"] for r in ok if r["turn"] == 0]
    later = [r["ttft_s"] for r in ok if r["turn"] > 0]
    cache = result.get("cache_report") or {}
    return {
        "sessions": sessions, "rounds": len(rows), "failed_rounds": len(rows) - len(ok),
        "duration_s": result["duration"],
        "sessions_per_min": 60.0 * sessions / result["duration"],
        "output_tokens_per_s": result["output_throughput"],
        # bench_serving leaves its input throughput at 0 for multi-turn replays: prompt
        # tokens the server computed (not served from the radix cache) per second, from turns
        "new_tokens_per_s": sum(r["context"] - r["cached"] for r in ok) / result["duration"],
        "ttft_median_s": result["median_ttft_ms"] / 1e3, "ttft_p90_s": result["p90_ttft_ms"] / 1e3,
        # TPOT ((e2e - TTFT) / (tokens - 1)) rather than ITL: the server coalesces streamed
        # tokens under load, and ITL is measured between chunks (0.28 ms at concurrency 4)
        "tpot_median_ms": result.get("median_tpot_ms"), "tpot_p90_ms": result.get("p90_tpot_ms"),
        "itl_median_ms": result["median_itl_ms"], "itl_p90_ms": result["p90_itl_ms"],
        "cache_hit_rate_pct": cache.get("cache_hit_rate_pct"),
        "accept_length": result.get("accept_length"),
        # from the per-request output (bench_serving has no per-context figure)
        "ttft_by_context": {str(b): {"median_s": statistics.median(v), "p90_s": _pct(v, 0.9), "n": len(v)}
                            for b, v in sorted(by_bin.items())},
        "ttft_long_median_s": statistics.median(long_) if long_ else None,
        "ttft_long_p90_s": _pct(long_, 0.9), "ttft_long_n": len(long_),
        "ttft_first_turn_median_s": statistics.median(first) if first else None,
        "ttft_later_turns_median_s": statistics.median(later) if later else None,
    }


def server_args(base: list, cfg_args: list, args, trace_meta: dict) -> list:
    top = max(args.concurrency)
    out = [*base, *cfg_args,
           "--max-running-requests", str(top),
           # the trace's context is an estimate (replies are the server's own): 1/8 slack
           "--context-length", str(trace_meta["spec"]["max_context"] * 9 // 8),
           "--chunked-prefill-size", str(args.chunked_prefill_size),
           "--enable-cache-report",
           # the server's own view of each turn, next to bench_serving's: per-request queue
           # and forward times in the log, TTFT/e2e/queue histograms on /metrics
           "--enable-request-time-stats-logging", "--enable-metrics",
           # and each finished request's timestamps: where a turn's TTFT goes (`ttft_split`)
           *ttft_split.REQUEST_LOG_ARGS]
    if args.mem_fraction is not None:
        out += ["--mem-fraction-static", str(args.mem_fraction)]
    if args.device == "cuda":
        # decode replays CUDA graphs up to the top concurrency
        out += ["--cuda-graph-max-bs-decode", str(top)]
        out += common.prefill_graph_args(args.prefill_graphs)  # off: eager extends, as up to session 15
    if args.mtp:
        out += common.MTP
    return out


def fpm_base(tag: str) -> str:
    """Where a server publishes its forward pass metrics: a short IPC path (a Unix socket's
    name has at most 107 bytes), one per benchmark process and server."""
    import tempfile

    return f"ipc://{tempfile.gettempdir()}/sgl-fpm-{os.getpid()}-{tag}"


def run_config(key: str, cfg: dict, model: Path, trace_path: Path, trace: dict, base: list, args, out: Path,
               probe: tuple, progress=None, tag: str | None = None, on_level=None) -> dict:
    """One server, every concurrency of `args.concurrency`; returns the config's entry (its
    levels' single runs under `_runs`, for `merge_servers`). `tag`: the files' stem (the key).
    `on_level(entry)` after each level, while the server still runs (the caller saves it)."""
    from sglang_indexcache.server import Server

    tag = tag or key
    log = out / f"{tag}-server.log"
    srv_args = server_args(base, cfg["args"], args, trace["metadata"])
    fpm_at = fpm_base(tag) if getattr(args, "forward_pass_metrics", False) else None
    if fpm_at is not None:
        srv_args += fpm.endpoint_args(fpm_at)
    srv = Server(model, srv_args, log=log, device=args.device, startup_timeout=args.timeout)
    if args.device == "cuda":
        srv.env.update(common.dense_prefill_env())
    srv.env.update({**common.tokenizer_env(model), **cfg.get("env", {})})
    entry = {"label": cfg["label"], "server_command": " ".join(srv.cmd), "levels": {},
             "server_env": {k: srv.env[k] for k in (*common.SERVER_ENV_KEYS, *cfg.get("env", {})) if k in srv.env}}
    reply = trace["metadata"]["spec"]["reply_tokens"]
    with srv:
        entry["startup_s"] = srv.startup_s
        # SGLang binds BASE.<dp_rank>; joined before the warm-up, so every timed forward is heard
        recorder = fpm.Recorder(fpm_at + ".0") if fpm_at is not None else None
        entry["kv_pool_tokens"] = common.kv_pool_tokens(log.read_text(errors="replace"))
        procs = srv.processes() if getattr(args, "py_spy", False) else None
        spied = (pyspy.scheduler_pids(procs), pyspy.http_pid(procs)) if procs is not None else None
        # first long prefills after startup: one short session, not timed
        warm = bench_serving_cmd(srv.url, model, trace_path, 1, 1, reply, out / f"{tag}-warmup.jsonl", max_turns=2)
        run_bench_serving(warm, out / f"{tag}-warmup.log", out / f"{tag}-warmup.jsonl", args.timeout)
        entry["probe"] = turn_probe(srv, model, probe, cuda=args.device == "cuda",
                                    profile_dir=out / "profiles" / tag if args.profile_probe else None)
        if progress is not None:
            progress.write(f"[{key}] one turn at {entry['probe']['context']} tokens: " + ", ".join(
                f"{k} {v:.3f}" for k, v in entry["probe"].items() if k != "context" and isinstance(v, float)))
        for c in args.concurrency:
            n = max(c, args.min_sessions)
            if n > len(trace["conversations"]):
                raise SystemExit(f"the trace has {len(trace['conversations'])} sessions; concurrency {c} needs {n}")
            short = pool_short(entry["kv_pool_tokens"], working_set(trace, n, c), c)
            if short:
                print(f"[{tag}] c={c}: WARNING {short}", file=sys.stderr, flush=True)
            runs = []
            for rep in range(args.repeats):  # each run flushes the radix cache first: the same work
                name = f"{tag}-c{c}" + (f"-r{rep}" if args.repeats > 1 else "")
                runs.append(run_level(srv, log, model, trace_path, trace, n, c, reply, out / name, args, recorder,
                                      spied))
                if progress is not None:
                    progress.update(1)
            entry["levels"][str(c)] = combine_runs(runs)
            entry.setdefault("_runs", {})[str(c)] = runs
            if on_level is not None:
                # saved before the next level and the server's stop (up to its grace period):
                # session 31 lost a finished replay's figures to a device call ending in between
                on_level(entry)
            if progress is not None:
                s = entry["levels"][str(c)]
                progress.write(f"[{tag}] c={c}: TTFT median {s['ttft_median_s']:.3f} s, >=96K "
                               f"{s['ttft_long_median_s'] or float('nan'):.3f} s, TPOT {s['tpot_median_ms']:.2f} ms, "
                               f"{s['sessions_per_min']:.2f} sessions/min, hit {s['cache_hit_rate_pct']}%"
                               + (f" (medians of {len(runs)} runs)" if len(runs) > 1 else ""))
                for r in runs:
                    if r.get("gpu_spans"):
                        g = r["gpu_spans"]
                        progress.write(f"[{tag}] c={c}: GPU spans {g['gpu_s']:.1f} s in {r['duration_s']:.1f} s "
                                       f"(prefill {g['prefill']['gpu_s']:.1f} s over {g['prefill']['forwards']} "
                                       f"forwards, decode {g['decode']['gpu_s']:.1f} s over "
                                       f"{g['decode']['forwards']}; {g['dropped']} dropped)")
        if recorder is not None:
            recorder.close()
    return entry


def run_level(srv, log: Path, model: Path, trace_path: Path, trace: dict, sessions: int, concurrency: int,
              reply: int, stem: Path, args, recorder=None, spied=None) -> dict:
    """One bench_serving replay of `sessions` sessions at `concurrency` against `srv`: its figures
    (`summarize`), the server's own view of the same turns, and the per-turn rows; with a
    `recorder` (`fpm.Recorder`), the GPU span of every forward of the replay (`gpu_spans`, the
    messages in STEM-fpm.jsonl.gz); with `spied` (scheduler pids, HTTP pid), their Python stacks
    sampled during the replay (`py_spy`, the stacks in STEM-pyspy[-http].txt.gz)."""
    f = stem.with_suffix(".jsonl")
    cmd = bench_serving_cmd(srv.url, model, trace_path, sessions, concurrency, reply, f)
    mark, before = len(log.read_text(errors="replace")), metrics_now(srv)
    heard = len(recorder.rows) if recorder is not None else 0
    spy = pyspy.Sampler(spied[0], stem.with_name(stem.name + "-pyspy.txt"), http=spied[1]) if spied else None
    try:
        result = run_bench_serving(cmd, stem.with_suffix(".log"), f, args.timeout)
    finally:  # py-spy would sample on until the server stops
        py_spy = spy.stop() if spy is not None else None
    time.sleep(1.0)  # the last ReqTimeStats line
    text = log.read_text(errors="replace")[mark:]
    stats = common.time_stats(text)
    rows = turns(result, trace, sessions)
    for r in rows:  # paired by prompt length (unique per turn in practice); None if absent
        st = stats.get(r["context"])
        r["server_queue_s"], r["server_forward_s"] = (st[2], st[3]) if st else (None, None)
    ttft_split.annotate(rows, text)
    level = {"command": " ".join(cmd), **summarize(result, rows, sessions), **ttft_split.summary(rows),
             "kv_working_set_tokens": working_set(trace, sessions, concurrency),
             "server": server_side(before, metrics_now(srv))}
    if py_spy is not None:
        level["py_spy"] = py_spy
    fwd = [r["server_forward_s"] for r in rows if r["server_forward_s"] is not None]
    level["server"]["forward_median_s"] = statistics.median(fwd) if fwd else None
    level["server"]["turns_paired"] = len(fwd)
    # the scheduler's own decode rate with every session of the level running (its log lines'
    # median), next to the client's TPOT: tells a server slower to decode from a client slower
    # to receive (session 18)
    rates = decode_log_lines(text, concurrency)["gen_throughput"]
    level["server"]["decode_tokens_per_s_median"] = statistics.median(rates) if rates else None
    if recorder is not None:
        recorder.check()
        spans = recorder.rows[heard:]
        with gzip.open(f"{stem}-fpm.jsonl.gz", "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in spans)
        level["gpu_spans"] = fpm.summarize(spans)
    return {**level, "turns": rows}


def run(args) -> int:
    import datetime as _dt

    from tqdm import tqdm

    from sglang_indexcache.bench import trace as trace_mod

    if args.repeats < 1 or args.servers < 1:
        raise SystemExit("--repeats and --servers must be at least 1")
    if args.device == "cuda" and args.mem_fraction is None:  # also: no GPU, say so before any work
        args.mem_fraction = common.mem_fraction_for(common.gpu_total_bytes())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = common.shape_patterns(args.shape) if args.shape else None
    if args.model_path:
        model = Path(args.model_path)
    elif shape:  # --mtp: the shape with one NextN layer, for EAGLE to draft with
        model = common.make_model(args.shape, out / ("model-nextn" if args.mtp else "model"), nextn=int(args.mtp))
    else:
        raise SystemExit("give --shape or --model-path")
    if args.mtp and common.nextn_layers(model) < 1:
        raise SystemExit(f"--mtp drafts with the model's NextN layer: {model}/config.json declares none "
                         "(num_nextn_predict_layers 0); without --model-path, --shape makes a model with one")
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    pattern = args.pattern or (shape or {}).get("pattern")
    if not pattern or len(pattern) != layers:
        raise SystemExit(f"--pattern must have {layers} letters (the model's layers)")
    cfgs = common.configs(layers, pattern, low=args.low or (shape or {}).get("low"),
                          searched=args.searched or (shape or {}).get("searched"), paged_rows=args.paged_rows)
    unknown = set(args.configs) - set(cfgs)
    if unknown:
        raise SystemExit(f"no configuration {sorted(unknown)} for this shape; have {sorted(cfgs)}")
    if args.device != "cuda" and set(args.configs) - {"b", "c", "e", "f"}:
        raise SystemExit("--device cpu runs only indexcache configurations (upstream dsa needs CUDA)")
    if args.device != "cuda" and getattr(args, "forward_pass_metrics", False):
        # SGLang's DeviceTimer asks torch.cuda for the stream: a CPU server's first forward fails
        raise SystemExit("--forward-pass-metrics needs CUDA (SGLang times forwards with CUDA events)")

    trace_path = Path(args.trace) if args.trace else out / "trace.json"
    if not trace_path.exists():
        need = max(max(args.concurrency), args.min_sessions)
        trace_mod.write_trace(model, trace_mod.spec_for(args.size, need, args.seed), trace_path)
    trace = json.loads(trace_path.read_text())
    base = common.BASE_ARGS if args.device == "cuda" else common.CPU_ARGS
    if args.mem_fraction is None:  # on CPU the pool comes from host RAM: the decode bench's 0.6
        args.mem_fraction = 0.6
    results_path = out / "results.json"
    # a results file may gather configurations run by several invocations (one server per config,
    # one device call each): the levels are their union, and each config keeps its own command
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    invocation = " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]])
    results.update({
        "workload": "agentic", "model": str(model), "shape": args.shape, "pattern": pattern,
        "gpu": common.gpu_info() if args.device == "cuda" else None, "device": args.device,
        "versions": common.versions(), "trace": {"path": str(trace_path), **trace["metadata"]},
        "invocation": invocation,
        "concurrency": sorted({*results.get("concurrency", []), *args.concurrency}), "mtp": args.mtp,
        "repeats": args.repeats, "servers": args.servers, "kernel_defaults": common.kernel_defaults(),
    })
    results.setdefault("configs", {})
    probe = probe_turn(model, trace)  # one tokenizer load for every configuration
    bar = tqdm(total=args.servers * len(args.configs) * len(args.concurrency) * args.repeats, desc="agentic", unit="run")
    served: dict = {key: [] for key in args.configs}
    def save(key: str, entries: list) -> None:  # the config's servers so far, the last maybe mid-way
        results["configs"][key] = {**merge_servers(entries), "invocation": invocation, "mtp": args.mtp,
                                   "repeats": args.repeats, "servers": len(entries)}
        results["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        results_path.write_text(json.dumps(results, indent=1) + "\n")

    for n in range(args.servers):  # interleaved: every config's n-th server before any (n+1)-th
        for key in args.configs:
            tag = key if args.servers == 1 else f"{key}-s{n}"
            served[key].append(run_config(key, cfgs[key], model, trace_path, trace, base, args, out, probe, bar, tag,
                                          on_level=lambda entry, key=key: save(key, [*served[key], entry])))
            save(key, served[key])
    bar.close()
    results["ratios"] = agentic_ratios(results)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    print(agentic_table(results))
    return 0
