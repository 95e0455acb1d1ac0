"""What a server measured itself during one level of `bench agentic`, from its `/metrics`
(`--enable-metrics`): SGLang's TTFT, end-to-end and queue histograms, and IndexCache's own
indexer layer-call counter (`backend/metrics.py`); a level's figures are the deltas of two reads."""

from __future__ import annotations

import re
import time

from sglang_indexcache.backend.metrics import FLUSH_S

# SGLang's Prometheus histograms (`--enable-metrics`), summed over label sets
HISTOGRAMS = ("sglang:time_to_first_token_seconds", "sglang:e2e_request_latency_seconds", "sglang:queue_time_seconds")


def histogram_sums(metrics_text: str) -> dict:
    out = {}
    for name in HISTOGRAMS:
        for part in ("sum", "count"):
            total = 0.0
            for line in metrics_text.splitlines():
                if line.startswith(f"{name}_{part}"):
                    total += float(line.rsplit(" ", 1)[1])
            out[f"{name}_{part}"] = total
    return out


# IndexCache's own counter (`backend/metrics.py`), one series per forward mode and outcome
INDEXER_CALLS = re.compile(r'^sglang:indexcache_indexer_layer_calls_total\{([^}]*)\} (\S+)$', re.M)


def indexer_calls(metrics_text: str) -> dict:
    """Indexer layer-calls by "forward mode:outcome" (run: Full layers, skipped: Shared), summed
    over ranks; empty for a server without the indexcache backend."""
    out = {}
    for labels, value in INDEXER_CALLS.findall(metrics_text):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = f"{d.get('forward_mode')}:{d.get('outcome')}"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def server_side(before: dict, after: dict) -> dict:
    """Means over one level from the histogram deltas: what the server measured itself; and the
    indexer layer-calls the level made, where the backend counts them (`indexer_calls`)."""
    out = {}
    for name in HISTOGRAMS:
        n = after[f"{name}_count"] - before[f"{name}_count"]
        if n > 0:
            out[name.split(":")[1].replace("_seconds", "_mean_s")] = (after[f"{name}_sum"] - before[f"{name}_sum"]) / n
    calls = {k: v - before.get("calls", {}).get(k, 0.0) for k, v in after.get("calls", {}).items()}
    if calls:
        out["indexer_layer_calls"] = calls
    return out


def metrics_now(srv) -> dict:
    """One read of the server's `/metrics`: the histogram sums and the indexer calls, after the
    backend's thread has added what the last forwards recorded (within FLUSH_S)."""
    time.sleep(2 * FLUSH_S)
    text = srv.text("/metrics")
    return {**histogram_sums(text), "calls": indexer_calls(text)}
