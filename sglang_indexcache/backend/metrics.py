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

A forward's counts reach the counter within `FLUSH_S` (a thread adds them up once a second): an
increment in multiprocess mode writes a shared file under a lock (0.6 us on the CPU machine), and
every replayed decode graph (under MTP the target's verify graph; the draft runs SGLang's own
backend) recorded up to two, on the host's critical path of a step (a record: 1.6 us before,
0.23 us now, CPU machine; session 42 found (c)'s bs-16 MTP step 17 us slower than (d)'s).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Optional

FLUSH_S = 1.0  # the most a recorded count waits before /metrics shows it
_METRICS: dict = {}  # one set per process: prometheus_client refuses a name registered twice

LABELS = ("model_name", "tp_rank", "pp_rank")


def stats_path_for(model_runner) -> Optional[str]:
    """The `SGLANG_INDEXCACHE_STATS` file this process writes (tests and the demo read it).

    One process: the path as given. Tensor or pipeline parallel: one file per rank,
    `PATH.tp{r}-pp{s}`, since every rank counts its own layers (a pipeline stage only its
    stage's) and ranks writing one file would leave whichever wrote last."""
    import os

    path = os.environ.get("SGLANG_INDEXCACHE_STATS") or None
    if path is None:
        return None
    par = _parallel()
    if par["tp_size"] > 1 or par["pp_size"] > 1:
        return f"{path}.tp{par['tp_rank']}-pp{par['pp_rank']}"
    return path


def _parallel() -> dict:
    """This process's tensor and pipeline ranks, from SGLang's runtime context (the model
    runner keeps no copy of them)."""
    from sglang.srt.runtime_context import get_parallel

    p = get_parallel()
    return {k: int(getattr(p, k, d)) for k, d in (("tp_size", 1), ("tp_rank", 0), ("pp_size", 1), ("pp_rank", 0))}


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
        self._children: dict = {}  # (forward_mode, outcome) -> labelled counter: a decode step
        # replays a graph every ~2 ms and labels() costs twice what inc() does (about 2 us, CPU)
        self.info, self.schedule = m["info"], None
        self.set_schedule(schedule)
        # (forward_mode, outcome) -> layer-calls recorded, and of them those on the counter: only
        # `record` writes the first, only `flush` (under its lock) the second; no lock per record
        self._recorded: dict = {}
        self._flushed: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._flush_every, name="indexcache-metrics", daemon=True).start()
        atexit.register(self.flush)  # a daemon thread dies at exit: what it held lands first

    def _info(self, schedule):
        return self.info.labels(**self.labels, pattern=schedule.pattern, full_layers=str(schedule.num_indexers),
                                layers=str(schedule.num_layers))

    def set_schedule(self, schedule) -> None:
        """The pattern in force is the info series at 1 (a switched server's old one drops to 0)."""
        if self.schedule is not None:
            self._info(self.schedule).set(0)
        self._info(schedule).set(1)
        self.schedule = schedule

    def record(self, forward_mode: str, runs: int, skips: int) -> None:
        """Count one forward's indexer layer-calls; on the counter within FLUSH_S (`flush`)."""
        r = self._recorded
        if runs:
            key = (forward_mode, "run")
            r[key] = r.get(key, 0) + runs
        if skips:
            key = (forward_mode, "skipped")
            r[key] = r.get(key, 0) + skips

    def flush(self) -> None:
        """Add what was recorded since the last flush to the counters."""
        with self._lock:
            for key, n in list(self._recorded.items()):  # one step under the GIL: a record's new key
                # cannot change the dict mid-iteration
                done = self._flushed.get(key, 0)
                if n > done:
                    self._child(*key).inc(n - done)
                    self._flushed[key] = n

    def close(self) -> None:
        """Stop the flushing thread after a last flush."""
        self._stop.set()
        self.flush()

    def _flush_every(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def _child(self, forward_mode: str, outcome: str):
        key = (forward_mode, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.calls.labels(**self.labels, forward_mode=forward_mode, outcome=outcome)
        return child


def metrics_for(model_runner: Any, schedule) -> Optional[IndexerMetrics]:
    """The backend's metrics when the server runs with --enable-metrics, else None."""
    server_args = model_runner.server_args
    if not getattr(server_args, "enable_metrics", False):
        return None
    ranks = _parallel()
    return IndexerMetrics(schedule, {
        "model_name": getattr(server_args, "served_model_name", None) or server_args.model_path,
        "tp_rank": ranks["tp_rank"],
        "pp_rank": ranks["pp_rank"],
    })
