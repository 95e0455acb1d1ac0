"""One agentic turn on a long cached prefix: timed, then profiled with SGLang's profiler.

Where a turn's time goes (indexer, sparse attention, MoE, host), per configuration: a
server per configuration; a prefix of `--context` random token ids is prefilled once (cold,
not timed); then turns of +N new tokens (each N of `--new`) go to `/generate` as token ids,
each with a fresh random suffix, so the prefix hits the radix cache and the new tokens do
not. Each turn size is timed `--repeats` times (client wall time and the server's
ReqTimeStats forward time), then one more turn is recorded between SGLang's own
`/start_profile` and `/stop_profile` (CPU + GPU activities) and its trace summarised per
kernel (`profile.kernel_table`): time, calls, the span from the first kernel to the last and the idle
gaps inside it. Token ids, not chat: this isolates the forward from the template and the
tokenizer, which the agentic benchmark's probe measures separately. `--warm-decode N` first
decodes N tokens of a short request (an agentic server has decoded before its turns; a turn
server otherwise never runs a decode step), and `--server-args` takes an agentic server's other
flags, so a difference between the two kinds of server can be taken apart. Our own client because
bench_serving cannot hold one cached prefix and vary only the new tokens."""

from __future__ import annotations

import json
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

from sglang_indexcache.bench import common
from sglang_indexcache.bench.profile import profile_forwards
from sglang_indexcache.bench.roofline import dims_of, per_full_layer, roofline


def graph_flags(prefill_graphs: str) -> list:
    """A turn server's CUDA graph flags. Decode graphs for batch 1 only: a turn generates one
    token (its extend's), so no decode step replays them, and capturing SGLang's 36 batch sizes
    took 39 s per server (session 13). Prefill graphs off by default (`off`): the turn runs
    eagerly, as sessions 12 and 13 profiled it, and they keep it off the dense path. `sglang`
    keeps SGLang's default breakable prefill graphs, as the agentic servers run them: an extend of
    up to 8,192 tokens replays one, its attention and indexer eager between the segments (session
    23's probe: a turn of 18 new tokens at 124K took longer through `indexcache` than through
    upstream native sharing with them on)."""
    return ["--cuda-graph-max-bs-decode", "1", *common.prefill_graph_args(prefill_graphs)]


def run_config(key: str, cfg: dict, model: Path, base: list, args, out: Path, extra_env: dict) -> dict:
    from sglang_indexcache.server import Server

    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    rng = random.Random(args.seed)
    prefix = common.random_ids(rng, args.context, vocab)
    greedy = {"temperature": 0.0, "max_new_tokens": 1}
    log = out / f"{key}-server.log"
    srv_args = [*base, *cfg["args"], "--context-length", str(args.context + max(args.new) + 1024),
                "--chunked-prefill-size", str(args.chunked_prefill_size), "--enable-request-time-stats-logging",
                "--mem-fraction-static", str(args.mem_fraction)]
    cuda = args.device == "cuda"
    if cuda:
        srv_args += graph_flags(args.prefill_graphs)
    srv_args += shlex.split(args.server_args)  # last: SGLang's parser keeps a flag's last value
    srv = Server(model, srv_args, log=log, device=args.device, startup_timeout=args.timeout)
    if cuda:
        srv.env.update(common.dense_prefill_env())
    srv.env.update({**extra_env, **cfg.get("env", {})})
    entry = {"label": cfg["label"], "server_command": " ".join(srv.cmd), "turns": {},
             "server_env": {k: srv.env[k] for k in (*common.SERVER_ENV_KEYS, *extra_env, *cfg.get("env", {}))
                            if k in srv.env}}
    with srv:
        if args.warm_decode:  # decode steps before the turns, as an agentic server has run them
            srv.post("/generate", {"input_ids": common.random_ids(random.Random(args.seed + 1), 64, vocab),
                                   "sampling_params": {"temperature": 0.0, "max_new_tokens": args.warm_decode,
                                                       "ignore_eos": True}}, timeout=args.timeout)
        t0 = time.perf_counter()
        srv.post("/generate", {"input_ids": prefix, "sampling_params": greedy}, timeout=args.timeout)
        entry["cold_prefill_s"] = time.perf_counter() - t0
        for n in args.new:
            wall, cached, fwd = [], [], []
            for r in range(args.repeats + 1):  # the first of each size is a warm-up, not kept
                mark = len(log.read_text(errors="replace"))
                t0 = time.perf_counter()
                res = srv.post("/generate", {"input_ids": prefix + common.random_ids(rng, n, vocab), "sampling_params": greedy},
                               timeout=args.timeout)
                dt = time.perf_counter() - t0
                time.sleep(0.2)  # the ReqTimeStats line
                if r:
                    wall.append(dt)
                    cached.append(res["meta_info"].get("cached_tokens"))
                    fwd += [st[3] * 1e3 for st in common.time_stats(log.read_text(errors="replace")[mark:]).values()]
            suffix = common.random_ids(rng, n, vocab)
            trace, table = profile_forwards(
                srv, out / "profiles", f"{key}-new{n}", cuda=cuda, timeout=args.timeout,
                run=lambda: srv.post("/generate", {"input_ids": prefix + suffix, "sampling_params": greedy},
                                     timeout=args.timeout))
            entry["turns"][str(n)] = {
                "wall_median_s": statistics.median(wall), "wall_s": wall, "cached_tokens": cached,
                "forward_median_ms": statistics.median(fwd) if fwd else None, "forward_ms": fwd,
                "profile": trace, "kernels": table,
            }
            print(f"[{key}] +{n} on {args.context}: wall {statistics.median(wall) * 1e3:.1f} ms, server forward "
                  f"{entry['turns'][str(n)]['forward_median_ms']} ms, GPU busy {table.get('busy_us', 0) / 1e3:.1f} ms "
                  f"of span {table.get('span_us', 0) / 1e3:.1f} ms", flush=True)
    return entry


def run(args) -> int:
    import datetime as _dt

    out = Path(args.out)
    extra_env = common.server_env_arg(args.server_env)
    out.mkdir(parents=True, exist_ok=True)
    if args.device != "cuda" and set(args.configs) & {"a", "d", "k", "m", "n", "p"}:
        raise SystemExit("--device cpu runs only indexcache configurations with SGLang's top-k "
                         "(upstream dsa and the v2 top-k kernel need CUDA)")
    if args.mem_fraction is None:  # on CPU the pool comes from host RAM
        args.mem_fraction = common.mem_fraction_for(common.gpu_total_bytes()) if args.device == "cuda" else 0.6
    shape = common.shape_patterns(args.shape)
    model = Path(args.model_path) if args.model_path else common.make_model(args.shape, out / "model")
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    pattern = args.pattern or shape["pattern"]
    if len(pattern) != layers:
        raise SystemExit(f"--pattern must have {layers} letters (the model's layers)")
    fits = {k: shape[k] if shape[k] and len(shape[k]) == layers else None for k in ("low", "searched")}
    cfgs = common.configs(layers, pattern, **fits, paged_rows=args.paged_rows)
    cfgs["g"] = {"label": "indexcache, one Full layer", "args": ["--attention-backend", "indexcache",
                                                                 "--index-cache-pattern", "F" + "S" * (layers - 1)]}
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"configs": {}}
    results.update({"workload": "turn", "model": str(model), "shape": args.shape, "context": args.context,
                    "new": args.new, "device": args.device, "prefill_graphs": args.prefill_graphs,
                    "warm_decode": args.warm_decode,
                    "gpu": common.gpu_info() if args.device == "cuda" else None, "versions": common.versions(),
                    "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]])})
    for key in args.configs:
        base = common.BASE_ARGS if args.device == "cuda" else common.CPU_ARGS
        entry = run_config(key, cfgs[key], model, base, args, out, extra_env)
        letters = cfgs[key]["args"][-1]
        entry["full_layers"] = (letters.count("F") if set(letters) <= {"F", "S"} else
                                pattern.count("F") if key == "d" else layers)
        results["configs"][key] = entry
        results["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        results_path.write_text(json.dumps(results, indent=1) + "\n")
    results["indexer"] = dims_of(json.loads((model / "config.json").read_text()))
    results["per_full_layer_ms"] = per_full_layer(results)
    results["roofline"] = roofline(results)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    return 0
