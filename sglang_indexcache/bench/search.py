"""`bench search`: what the pattern search costs on one GPU, one server against a server per
candidate (the search issue's item 3).

`search --evaluator sglang` scores every candidate on one `--index-cache-switchable` server
(the pattern switched through the admin route, the calibration set sent as one batched
`/generate`); `--evaluator sglang-restart` starts a server per candidate. This times both
evaluators, as `search` runs them (`tools/sglang_eval.py`), on a shape with dummy weights
(default: one TP rank of GLM-5.2, 78 layers) and a calibration set of `--calib-tokens` random
token ids:

  switching  the server's start once, then `--candidates` evaluations: the first candidates of
             the greedy search's first step (all Full with one layer made Shared)
  restart    `--restarts` evaluations, each a server's start, the scoring and its stop

and projects a whole greedy search from all Full to `--target` (`tools/search.evaluations_for`:
2,814 evaluations for 78 layers to 1/4) from each evaluator's median seconds per evaluation.
Both servers run without CUDA graphs (a switchable server must; scoring is prefill only, so
graphs would only lengthen each restart) and on the same flags otherwise.

    python -m sglang_indexcache.bench search --out out/search --shape glm-5.2-tp8
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path


def run(args) -> int:
    from sglang_indexcache.bench import common
    from sglang_indexcache.tools.search import evaluations_for, flip
    from sglang_indexcache.tools.sglang_eval import SGLangEvaluator, SwitchingEvaluator

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = args.device == "cuda"
    model = Path(args.model_path) if args.model_path else common.make_model(args.shape, out / "model")
    cfg = json.loads((model / "config.json").read_text())
    layers = int(cfg["num_hidden_layers"])
    if args.calib_tokens < args.seq_len:
        raise SystemExit(f"--calib-tokens ({args.calib_tokens}) is less than one sequence of --seq-len ({args.seq_len})")
    if not 1 <= args.candidates < layers:
        raise SystemExit(f"--candidates must be between 1 and {layers - 1} (the first step's candidates)")
    if not 1 <= args.restarts <= args.candidates:
        raise SystemExit(f"--restarts must be between 1 and --candidates ({args.candidates}): the restart "
                         "evaluator rescores the switching server's first candidates")
    rng = random.Random(args.seed)
    calib = [common.random_ids(rng, args.seq_len, int(cfg["vocab_size"]))
             for _ in range(args.calib_tokens // args.seq_len)]
    if cuda:
        mem = args.mem_fraction or common.mem_fraction_for(common.gpu_total_bytes())
        server_args = [*common.BASE_ARGS, "--mem-fraction-static", str(mem), "--disable-cuda-graph"]
    else:
        # the pool comes from host RAM: SGLang's own default fraction fails there (the other
        # CPU smoke runs pass 0.6 too)
        server_args = [*common.CPU_ARGS, "--mem-fraction-static", str(args.mem_fraction or 0.6),
                       "--max-total-tokens", str(2 * args.calib_tokens)]
    server_args += ["--context-length", str(args.seq_len + 64), "--chunked-prefill-size", str(args.chunked_prefill_size)]
    env = {**(common.dense_prefill_env() if cuda else {}), **common.tokenizer_env(model)}
    all_full = "F" * layers
    patterns = [flip(all_full, i) for i in range(1, args.candidates + 1)]
    total = evaluations_for(layers, args.target)
    results = {
        "workload": "search", "model": str(model), "shape": args.shape, "layers": layers, "device": args.device,
        "gpu": common.gpu_info() if cuda else None, "versions": common.versions(),
        "invocation": " ".join([sys.executable, "-m", "sglang_indexcache.bench", *sys.argv[1:]]),
        "calibration": {"sequences": len(calib), "seq_len": args.seq_len, "tokens": len(calib) * args.seq_len},
        "server_args": server_args, "server_env": {**common.inherited_env(), **env},
        "target": args.target, "search_evaluations": total,
    }

    t0 = time.perf_counter()
    switching = SwitchingEvaluator(model, calib, all_full=all_full, server_args=server_args, device=args.device,
                                   log_dir=out / "logs", env=env)
    startup = time.perf_counter() - t0
    try:
        times, losses = _timed(switching.loss, patterns)
    finally:
        switching.close()
    results["switching"] = _summary(times, losses, total, startup)
    _write(out, results)
    restart = SGLangEvaluator(model, calib, all_full=all_full, server_args=server_args, device=args.device,
                              log_dir=out / "logs", env=env)
    times, losses = _timed(restart.loss, patterns[:args.restarts])
    results["restart"] = _summary(times, losses, total, 0.0)
    s, r = results["switching"], results["restart"]
    results["speedup"] = r["s_per_eval_median"] / s["s_per_eval_median"]
    # the same pattern scored by both: one server's switch against a fresh server's start
    results["loss_differences"] = {p: abs(s["losses"][p] - r["losses"][p]) for p in r["losses"]}
    _write(out, results)
    print(table(results))
    plot(results, out / "search.png")
    return 0


def _timed(loss, patterns) -> tuple:
    times, losses = [], {}
    for i, p in enumerate(patterns):
        t0 = time.perf_counter()
        losses[p] = loss(p)
        times.append(time.perf_counter() - t0)
        print(f"  {i + 1}/{len(patterns)} {p}: loss {losses[p]:.5f} in {times[-1]:.2f} s", flush=True)
    return times, losses


def _summary(times: list, losses: dict, total: int, startup_s: float) -> dict:
    med = statistics.median(times)
    return {"startup_s": startup_s, "s_per_eval": times, "s_per_eval_median": med, "evals_per_hour": 3600 / med,
            "losses": losses, "projected_search_hours": (startup_s + total * med) / 3600}


def _write(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


def table(results: dict) -> str:
    c = results["calibration"]
    lines = [f"pattern search on {results['layers']} layers ({results['model']}, "
             f"{(results.get('gpu') or {}).get('name') or results['device']}); calibration {c['sequences']} x "
             f"{c['seq_len']} tokens; a search to {results['target']}: {results['search_evaluations']} evaluations",
             f"  {'evaluator':<28} {'start s':>8} {'s/eval':>8} {'evals/h':>9} {'search h':>9}"]
    for key, label in (("switching", "one switchable server"), ("restart", "a server per candidate")):
        if key in results:
            e = results[key]
            lines.append(f"  {label:<28} {e['startup_s']:8.1f} {e['s_per_eval_median']:8.2f} "
                         f"{e['evals_per_hour']:9.0f} {e['projected_search_hours']:9.2f}")
    if "speedup" in results:
        worst = max(results["loss_differences"].values(), default=0.0)
        lines.append(f"  one server is {results['speedup']:.1f}x faster per evaluation; "
                     f"same patterns scored by both differ by at most {worst:.2e} in loss")
    return "\n".join(lines)


def plot(results: dict, png: Path) -> None:
    """Seconds per evaluation (each timed one) and the projected search, per evaluator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("switching", "restart") if k in results]
    labels = {"switching": "one switchable\nserver", "restart": "a server per\ncandidate"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    for i, k in enumerate(keys):
        times = results[k]["s_per_eval"]
        a.scatter([i] * len(times), times, color="tab:blue")
        a.bar(i, results[k]["s_per_eval_median"], color="tab:blue", alpha=0.3)
        b.bar(i, results[k]["projected_search_hours"], color="tab:orange")
    for ax in (a, b):
        ax.set_xticks(range(len(keys)), [labels[k] for k in keys])
    a.set_ylabel("seconds per evaluation (dots: each; bar: median)")
    b.set_ylabel(f"hours for a search to {results['target']} ({results['search_evaluations']} evaluations)")
    c = results["calibration"]
    gpu = (results.get("gpu") or {}).get("name") or results["device"]
    fig.suptitle(f"pattern search, {results['layers']} layers, {c['tokens']} calibration tokens, on {gpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
