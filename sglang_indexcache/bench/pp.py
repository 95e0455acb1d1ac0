"""Pipeline parallelism side by side: what each stage-boundary handoff costs (PP 2).

One server per configuration, one after another on the same GPUs, each with `--pp-size 2`:
  a            `dsa`, all Full
  d            `dsa` native sharing of PATTERN: stage 1 starts on a Shared layer and SGLang
               sends it the top-k (upstream's transfer)
  c-recompute  `indexcache` PATTERN, the stage start promoted to Full
  c-transfer   `indexcache` PATTERN, the stage start reads the top-k stage 0 sends
  c-align      `indexcache` PATTERN, SGLANG_PP_LAYER_PARTITION moved so stage 1 starts on Full
For every prompt length, `--repeats` prefills of fresh random token ids (max_new_tokens 1)
after one warm-up: client wall time, the server's forward time (ReqTimeStats), and from the
probe every scheduler process runs (`integration/pp_probe.py`): the bytes stage 0 sent across
the boundary for the request, per tensor (hidden states, residual, top-k), measured where
SGLang sends them; each stage's GPU time for the request; each stage's peak memory. Then a
decode point (`decode.serve_decode`, B requests at L tokens) per configuration: its
wall-clock tokens/s (SGLang's decode log lines are per micro-batch under PP, so their
B-request median is empty there). Our own client, as in `turn.py`: bench_serving reports
neither stage times nor boundary bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import random
import statistics
import sys
import time
from pathlib import Path

from sglang_indexcache.bench import common

CONFIG_KEYS = ("a", "d", "c-recompute", "c-transfer", "c-align")


def pp_configs(num_layers: int, pattern: str) -> dict:
    base = common.configs(num_layers, pattern)
    ic = ["--attention-backend", "indexcache", "--index-cache-pattern", pattern, "--index-cache-pp-handoff"]
    return {
        "a": base["a"],
        "d": {"label": f"dsa native sharing, {pattern} (SGLang sends the top-k)", "args": base["d"]["args"]},
        "c-recompute": {"label": f"indexcache, {pattern}, recompute", "args": [*ic, "recompute"]},
        "c-transfer": {"label": f"indexcache, {pattern}, transfer", "args": [*ic, "transfer"]},
        "c-align": {"label": f"indexcache, {pattern}, align", "args": [*ic, "align"]},
    }


def read_probe(prefix: Path, pp_size: int) -> list:
    """Each stage's probe counters (tensor-parallel rank 0)."""
    out = []
    for stage in range(pp_size):
        path = Path(f"{prefix}.tp0-pp{stage}")
        out.append(json.loads(path.read_text()) if path.exists() else {})
    return out


def probe_delta(before: list, after: list) -> dict:
    """What one request added: boundary bytes per tensor (sent by every stage but the last),
    GPU ms and forwards per stage, and each stage's peak memory so far."""
    sent: dict = {}
    for b, a in zip(before[:-1], after[:-1]):
        for key, n in a.get("proxy_bytes", {}).items():  # tensors only: the message kind is a string
            sent[key] = sent.get(key, 0) + n - b.get("proxy_bytes", {}).get(key, 0)
    return {
        "boundary_bytes": sent,
        "stage_ms": [a.get("forward_ms_total", 0.0) - b.get("forward_ms_total", 0.0) for b, a in zip(before, after)],
        "stage_forwards": [a.get("forwards", 0) - b.get("forwards", 0) for b, a in zip(before, after)],
        "peak_bytes": [a.get("peak_bytes") for a in after],
    }


def _settle(prefix: Path, pp_size: int, timeout: float = 30.0) -> list:
    """The probe files once every launched forward is timed (the probe's watcher writes them)."""
    deadline = time.monotonic() + timeout
    while True:
        stages = read_probe(prefix, pp_size)
        if all(s and s.get("forward_count") == s.get("forwards") for s in stages) or time.monotonic() > deadline:
            return stages
        time.sleep(0.1)


def _handoff_lines(log_text: str) -> list:
    """The schedule table's pipeline-handoff lines a server logged (the first two)."""
    return [line.split("] ", 1)[-1] for line in log_text.splitlines() if "pipeline handoff" in line][:2]


def run_config(key: str, cfg: dict, model: Path, args, out: Path) -> dict:
    from sglang_indexcache.bench.decode import serve_decode
    from sglang_indexcache.server import Server

    cuda = args.device == "cuda"
    base = common.BASE_ARGS if cuda else common.CPU_ARGS
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    rng = random.Random(args.seed)
    log = out / f"{key}-server.log"
    probe = out / f"probe-{key}"
    parallel = ["--pp-size", str(args.pp_size)]
    longest = max(args.lengths, default=0)
    srv_args = [*base, *cfg["args"], *parallel, "--context-length", str(longest + 1024),
                "--chunked-prefill-size", str(args.chunked_prefill_size), "--enable-request-time-stats-logging"]
    if cuda:
        srv_args += ["--mem-fraction-static", str(args.mem_fraction), "--cuda-graph-backend-prefill", "disabled"]
    else:  # every CPU rank takes its pool from host memory: a fraction each would not fit
        srv_args += ["--max-total-tokens", str(2 * longest + 4096)]
    srv = Server(model, srv_args, log=log, device=args.device, startup_timeout=args.timeout)
    srv.env.update({**(common.dense_prefill_env() if cuda else {}), **(common.MULTI_GPU_ENV if cuda else args.cpu_env),
                    "SGLANG_INDEXCACHE_PP_PROBE": str(probe)})
    entry = {"label": cfg["label"], "server_command": " ".join(srv.cmd), "lengths": {},
             "server_env": {k: srv.env[k] for k in (*common.SERVER_ENV_KEYS, *common.MULTI_GPU_ENV) if k in srv.env}}
    greedy = {"temperature": 0.0, "max_new_tokens": 1}
    with (srv if args.lengths else contextlib.nullcontext()):  # no lengths: the decode point only
        text = log.read_text(errors="replace") if args.lengths else ""
        entry["schedule"] = _handoff_lines(text)
        for n in args.lengths:
            rows = []
            for r in range(args.repeats + 1):  # the first of each length is a warm-up, not kept
                before = _settle(probe, args.pp_size)
                mark = len(log.read_text(errors="replace"))
                ids = common.random_ids(rng, n, vocab)
                t0 = time.perf_counter()
                srv.post("/generate", {"input_ids": ids, "sampling_params": greedy}, timeout=args.timeout)
                wall = time.perf_counter() - t0
                time.sleep(0.2)  # the ReqTimeStats line
                row = {"wall_s": wall, **probe_delta(before, _settle(probe, args.pp_size))}
                fwd = [st[3] for st in common.time_stats(log.read_text(errors="replace")[mark:]).values()]
                row["forward_s"] = fwd[-1] if fwd else None
                if r:
                    rows.append(row)
            med = lambda k: statistics.median(x[k] for x in rows if x[k] is not None)  # noqa: E731
            entry["lengths"][str(n)] = {
                "runs": rows, "wall_median_s": med("wall_s"), "forward_median_s": med("forward_s"),
                "boundary_bytes": rows[-1]["boundary_bytes"],
                "stage_ms_median": [statistics.median(x["stage_ms"][k] for x in rows) for k in range(args.pp_size)],
                "peak_bytes": rows[-1]["peak_bytes"],
            }
            e = entry["lengths"][str(n)]
            print(f"[{key}] {n} tokens: wall {e['wall_median_s'] * 1e3:.1f} ms, stages "
                  f"{', '.join(f'{ms:.1f}' for ms in e['stage_ms_median'])} ms, boundary "
                  f"{ {k: v for k, v in e['boundary_bytes'].items()} }", flush=True)
    if args.decode_batch:
        d_args = argparse.Namespace(
            decode_batch=args.decode_batch, decode_len=args.decode_len, decode_short=args.decode_short,
            decode_steps=args.decode_steps, decode_repeats=args.decode_repeats, decode_mem_fraction=args.mem_fraction,
            decode_log_interval=8, chunked_prefill_size=args.chunked_prefill_size, seed=args.seed,
            device=args.device, timeout=args.timeout, profile_steps=0,
            decode_max_total_tokens=None if cuda else args.decode_batch * (args.decode_len + args.decode_steps) + 4096)
        entry["decode"] = d = serve_decode(model, [*base, *cfg["args"], *parallel], d_args, out / f"{key}-decode.log",
                                       env=common.MULTI_GPU_ENV if cuda else args.cpu_env)
        if not entry["schedule"]:
            entry["schedule"] = _handoff_lines((out / f"{key}-decode.log").read_text(errors="replace"))
        print(f"[{key}] decode bs {args.decode_batch} at {args.decode_len}: {d['tokens_per_s']:.1f} tok/s, "
              f"SGLang log median {d['log_gen_throughput_median']} tok/s", flush=True)
    return entry


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model_path:
        model = Path(args.model_path)
    else:
        model = common.make_model(args.shape, out / "model")
    num_layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    pattern = args.pattern or common.shape_patterns(args.shape)["pattern"]
    if len(pattern) != num_layers:
        raise SystemExit(f"--pattern has {len(pattern)} layers, {model} has {num_layers}")
    if not args.lengths and not args.decode_batch:
        raise SystemExit("nothing to measure: give --lengths, a --decode-batch, or both")
    if args.device == "cuda":
        if args.mem_fraction is None:
            args.mem_fraction = common.mem_fraction_for(common.gpu_total_bytes())
        args.cpu_env = {}
    else:
        if set(args.configs) & {"a", "d"}:
            raise SystemExit("--device cpu: configs a and d need SGLang's dsa kernels (CUDA); run the c-* configs")
        args.cpu_env = {"SGLANG_CPU_OMP_THREADS_BIND": "|".join(str(i) for i in range(args.pp_size))}
    cfgs = pp_configs(num_layers, pattern)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.update({
        "workload": "pp", "model": str(model), "pattern": pattern, "pp_size": args.pp_size,
        "lengths": args.lengths, "device": args.device,
        "gpu": common.gpu_info() if args.device == "cuda" else None, "versions": common.versions(),
        "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]]),
    })
    results.setdefault("configs", {})
    for key in args.configs:
        results["configs"][key] = run_config(key, cfgs[key], model, args, out)
        results["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        results_path.write_text(json.dumps(results, indent=1) + "\n")
    from sglang_indexcache.bench import report

    print(report.pp_table(results))
    return 0
