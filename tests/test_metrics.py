"""The backend's Prometheus counters (`backend/metrics.py`): what a forward records lands on the
series of its forward mode and outcome, call after call (the labelled counters are kept between
calls, since a decode step records once per CUDA-graph replay), within FLUSH_S of the record
(a thread adds them up: a counter increment costs a decode step's host time)."""

import time

from prometheus_client import REGISTRY

from sglang_indexcache.backend.metrics import FLUSH_S, IndexerMetrics
from sglang_indexcache.schedule import IndexCacheFlags, build_schedule


def _metrics(model_name):
    labels = {"model_name": model_name, "tp_rank": 0, "pp_rank": 1}
    m = IndexerMetrics(build_schedule(12, {}, flags=IndexCacheFlags(pattern="FSSSFSSSFSSS")), labels)

    def value(mode, outcome):
        return REGISTRY.get_sample_value("sglang:indexcache_indexer_layer_calls_total",
                                         {**{k: str(v) for k, v in labels.items()},
                                          "forward_mode": mode, "outcome": outcome})
    return m, value


def test_indexer_layer_calls_accumulate_per_forward_mode_and_outcome():
    m, value = _metrics("metrics-test")
    for _ in range(5):
        m.record("DECODE", 3, 9)
    m.record("EXTEND", 3, 9)
    m.flush()
    m.record("EXTEND", 12, 0)  # an all-Full forward: no skipped series touched
    m.record("TARGET_VERIFY", 0, 12)
    m.close()
    assert (value("DECODE", "run"), value("DECODE", "skipped")) == (15, 45)
    assert (value("EXTEND", "run"), value("EXTEND", "skipped")) == (15, 9)
    assert value("TARGET_VERIFY", "run") is None and value("TARGET_VERIFY", "skipped") == 12


def test_recorded_counts_reach_the_counter_within_the_flush_interval_without_another_record():
    """An idle server's last forwards show on /metrics: the thread flushes them, no later record
    needed."""
    m, value = _metrics("metrics-flush-test")
    m.record("DECODE", 3, 9)
    assert value("DECODE", "run") is None  # recorded, not yet on the counter
    deadline = time.monotonic() + 10 * FLUSH_S
    while value("DECODE", "run") is None and time.monotonic() < deadline:
        time.sleep(FLUSH_S / 10)
    assert (value("DECODE", "run"), value("DECODE", "skipped")) == (3, 9)
    m.close()
