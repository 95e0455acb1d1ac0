"""Decode: a real server per configuration (`python -m sglang.launch_server`, chunked
prefill, CUDA graphs). one_batch cannot do it: it prefills the whole batch in one forward
(16 x 64K tokens needs a 32 GiB indexer logits buffer). The server gets B prompts of L
random tokens as one batched `/generate` (max_new_tokens 1, which leaves them in the
radix cache) and once more untimed with the short max_new_tokens (the first batch after a
prefill ran 2 to 3 times slower than the rest on the H200s: 1.54 s against 0.41 to 0.53 s),
then the same B prompts again with a short and a long max_new_tokens (64 and 1088 by
default), alternating, several times. Every timed request must hit the radix
cache for its whole prompt but the last page (64 tokens with DSA), so the time is decode.
Two figures per configuration:
  * SGLang's own `gen throughput` log lines with B running requests, median over the
    long runs (a line that spans the pause between two batches reads low; the median
    absorbs it). On an H200 its inter-quartile range was 0.4% (all-Full) to 4% (1/4).
  * wall-clock: B x (long - short) / (median time long - median time short), which
    cancels the HTTP and the extend of the last page but keeps a few % of timing noise.
With `--mtp` every configuration runs EAGLE over the model's NextN layer and the entry
records SGLang's accept length (`/server_info`'s avg_spec_accept_length) as well.
`--profile-steps N` then records N scheduler steps of one more short batch with SGLang's
profiler (`profile.py`): per step, the GPU timeline's span, busy time and idle gaps, the
kernel families, the host's busiest operators and its period between decode graph launches
(under MTP a step is one draft-verify round); `--profile-stack` adds the Python functions by
self time. `--prefill-graphs sglang` keeps SGLang's default breakable prefill graphs, as the
agentic benchmark's servers run."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from sglang_indexcache.bench.common import MTP, dense_prefill_env, gpu_state, kv_pool_tokens, prefill_graph_args
from sglang_indexcache.bench.profile import profile_forwards

# the longest wait for a profile of a few decode steps to be written (seconds): a trace that
# never appears must not hold a GPU for the whole --timeout
PROFILE_WAIT_S = 180

DECODE_LINE = re.compile(
    r"Decode batch.*?#running-req: (\d+),.*?graph: (True|False), gen throughput \(token/s\): ([0-9.]+)")


def decode_log_lines(text: str, batch: int) -> dict:
    """SGLang's own decode log lines with `batch` running requests: gen throughput values
    and how many of those steps ran under a CUDA graph."""
    rows = [(int(n), g == "True", float(t)) for n, g, t in DECODE_LINE.findall(text)]
    full = [r for r in rows if r[0] == batch and r[2] > 0]
    return {"lines": len(full), "graph_lines": sum(r[1] for r in full), "gen_throughput": [r[2] for r in full]}


def serve_decode(model: Path, cfg_args: list, args, log: Path, env: dict | None = None) -> dict:
    """Decode tokens/s of `args.decode_batch` concurrent requests at `args.decode_len`
    tokens of context on a real server (see the module docstring); `env`: more server
    environment (the pipeline benchmark's)."""
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
    max_tokens = getattr(args, "decode_max_total_tokens", None)  # CPU ranks: host memory, sized by need
    server_args = [
        *cfg_args,
        *(["--max-total-tokens", str(max_tokens)] if max_tokens else ["--mem-fraction-static", str(args.decode_mem_fraction)]),
        "--max-running-requests", str(B),
        "--chunked-prefill-size", str(args.chunked_prefill_size),
        "--decode-log-interval", str(args.decode_log_interval),
        "--context-length", str(L + long_ + 64),
    ]
    if args.device == "cuda":
        server_args += ["--cuda-graph-max-bs-decode", str(B)]
        # decode steps replay decode CUDA graphs; prefill graphs cost 187 s of capture per server
        # on the H200 and take no part in what is timed here unless `--prefill-graphs sglang`
        server_args += prefill_graph_args(getattr(args, "prefill_graphs", "off"))
    if getattr(args, "mtp", False):
        server_args += MTP
    srv = Server(model, server_args, log=log, device=args.device, startup_timeout=args.timeout)
    env_extra = {**(dense_prefill_env() if args.device == "cuda" else {}), **(env or {})}
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

    gpus = {"before_start": gpu_state()}
    with srv:
        t_prefill, _ = batch(1)
        warmup_s, _ = batch(short)  # not timed: see the module docstring
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
        gpus["after_timed"] = gpu_state()
        profiled = None
        steps = getattr(args, "profile_steps", 0)
        if steps:
            if steps >= short:
                raise ValueError(f"--profile-steps ({steps}) must be below --decode-short ({short})")
            name, table = profile_forwards(srv, log.parent / "profiles", f"{log.stem}-decode", cuda=args.device == "cuda",
                                           run=lambda: batch(short), num_steps=steps,
                                           timeout=min(args.timeout, PROFILE_WAIT_S),
                                           with_stack=bool(getattr(args, "profile_stack", False)))
            profiled = {"trace": name, "steps": steps, "kernels": table}
            launches = table.get("graph_launches", {})
            if "median_us" in launches:  # a step's period on the host: one decode graph launch each
                profiled["host_us_per_step"] = launches["median_us"]
            for key in ("span_us", "busy_us", "gap_us"):
                if key in table:
                    profiled[key.replace("_us", "_us_per_step")] = table[key] / steps
        text = log.read_text(errors="replace")
        accept = None
        if getattr(args, "mtp", False):
            states = (srv.get("/server_info").get("internal_states") or [{}])
            accept = states[0].get("avg_spec_accept_length")
    logged = decode_log_lines("".join(long_logs), B)
    t_s, t_l = statistics.median(times[short]), statistics.median(times[long_])
    step = (t_l - t_s) / (long_ - short)
    if step <= 0:
        raise ServerError(f"{long_} steps took no longer than {short} ({t_l:.3f} s vs {t_s:.3f} s): "
                          "timing noise exceeds the decode time; raise --decode-steps")
    return {
        "command": " ".join(srv.cmd), "env": env_extra, "kv_pool_tokens": kv_pool_tokens(text),
        "batch_size": B, "context": L, "short": short, "steps": long_, "repeats": args.decode_repeats,
        "prefill_s": t_prefill, "warmup_s": warmup_s, "times_s": {str(k): v for k, v in times.items()},
        "ms_per_step": step * 1e3, "tokens_per_s": B / step,
        "log_gen_throughput_median": statistics.median(logged["gen_throughput"]) if logged["gen_throughput"] else None,
        "log_lines": logged["lines"], "log_graph_lines": logged["graph_lines"],
        "mtp": bool(getattr(args, "mtp", False)), "accept_length": accept, "profile": profiled, "gpus": gpus,
    }


