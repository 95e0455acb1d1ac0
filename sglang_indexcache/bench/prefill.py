"""Prefill: SGLang's own `sglang.benchmark.one_batch` (dummy weights, no server) in a
subprocess with our plugin loaded (one_batch does not load plugins itself); batch 1 at
each context length, every length repeated, median reported."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from sglang_indexcache.bench.common import dense_prefill_env, kv_pool_tokens


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
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    return {"command": " ".join(cmd), "kv_pool_tokens": kv_pool_tokens(text), "rows": rows}


def measure(key: str, common: list, args, out: Path) -> dict:
    """Batch-1 prefill latency at each of `args.lengths`, `args.repeats` times; medians."""
    lens = [str(n) for n in args.lengths] * args.repeats
    r = _one_batch(
        [*common, "--mem-fraction-static", str(args.mem_fraction), "--batch-size", "1",
         "--input-len", *lens, "--output-len", str(args.prefill_output_len)],
        out / f"{key}-prefill.log", out / f"{key}-prefill.jsonl", args.timeout,
    )
    per_len = {}
    for row in r["rows"]:
        per_len.setdefault(str(row["input_len"]), []).append(row["prefill_latency"])
    return {
        "command": r["command"], "kv_pool_tokens": r["kv_pool_tokens"],
        "latency_s": {n: {"median": statistics.median(v), "all": v} for n, v in per_len.items()},
    }


def one_batch_main(argv: list) -> int:
    """SGLang's one_batch with plugins loaded (it does not load them itself)."""
    from sglang.srt.plugins import load_plugins

    load_plugins()
    from sglang.benchmark import one_batch

    sys.argv = ["sglang.benchmark.one_batch", *argv]
    one_batch.cli_main()
    return 0
