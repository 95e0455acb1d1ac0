"""Prometheus metrics of the `indexcache` backend, next to SGLang's own (`--enable-metrics`).

SGLang runs prometheus_client in multiprocess mode: each scheduler writes its metrics to
files under `PROMETHEUS_MULTIPROC_DIR`, and the HTTP server's `/metrics` reads them all.

- `sglang:indexcache_indexer_layer_calls_total{forward_mode, outcome}`: indexer layer-calls
  that ran (`outcome="run"`, Full layers) and that were skipped by reusing a source
  (`outcome="skipped"`, Shared layers), per forward mode (EXTEND, DECODE, TARGET_VERIFY, ...).
  Counted like the stats file: every forward the layer hook checked, CUDA-graph warm-ups and
  captures included, plus each replay with the counts seen at its graph's capture.
- `sglang:indexcache_pattern_info{pattern, full_layers, layers} 1`: the schedule in force.

Both carry SGLang's `model_name`, `tp_rank` and `pp_rank` labels.
"""

from __future__ import annotations

from typing import Any, Optional

_METRICS: dict = {}  # one set per process: prometheus_client refuses a name registered twice

LABELS = ("model_name", "tp_rank", "pp_rank")


def _get():
    if not _METRICS:
        from prometheus_client import Counter, Gauge

        _METRICS["calls"] = Counter(
            "sglang:indexcache_indexer_layer_calls",
            "Indexer layer-calls run (Full layers) and skipped (Shared layers reusing a source), per forward mode",
            labelnames=[*LABELS, "forward_mode", "outcome"],
        )
        _METRICS["info"] = Gauge(
            "sglang:indexcache_pattern_info",
            "The IndexCache schedule in force (F = runs the indexer, S = reuses the nearest earlier F)",
            labelnames=[*LABELS, "pattern", "full_layers", "layers"],
            multiprocess_mode="mostrecent",
        )
    return _METRICS


class IndexerMetrics:
    def __init__(self, schedule, labels: dict):
        self.labels = {k: str(labels[k]) for k in LABELS}
        m = _get()
        self.calls = m["calls"]
        m["info"].labels(**self.labels, pattern=schedule.pattern, full_layers=str(schedule.num_indexers),
                         layers=str(schedule.num_layers)).set(1)

    def record(self, forward_mode: str, runs: int, skips: int) -> None:
        if runs:
            self.calls.labels(**self.labels, forward_mode=forward_mode, outcome="run").inc(runs)
        if skips:
            self.calls.labels(**self.labels, forward_mode=forward_mode, outcome="skipped").inc(skips)


def metrics_for(model_runner: Any, schedule) -> Optional[IndexerMetrics]:
    """The backend's metrics when the server runs with --enable-metrics, else None."""
    server_args = model_runner.server_args
    if not getattr(server_args, "enable_metrics", False):
        return None
    return IndexerMetrics(schedule, {
        "model_name": getattr(server_args, "served_model_name", None) or server_args.model_path,
        "tp_rank": getattr(model_runner, "tp_rank", 0),
        "pp_rank": getattr(model_runner, "pp_rank", 0),
    })
