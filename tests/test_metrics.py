"""The backend's Prometheus counters (`backend/metrics.py`): what a forward records lands on the
series of its forward mode and outcome, call after call (the labelled counters are kept between
calls, since a decode step records once per CUDA-graph replay)."""

from prometheus_client import REGISTRY

from sglang_indexcache.backend.metrics import IndexerMetrics
from sglang_indexcache.schedule import IndexCacheFlags, build_schedule


def test_indexer_layer_calls_accumulate_per_forward_mode_and_outcome():
    labels = {"model_name": "metrics-test", "tp_rank": 0, "pp_rank": 1}
    m = IndexerMetrics(build_schedule(12, {}, flags=IndexCacheFlags(pattern="FSSSFSSSFSSS")), labels)

    def value(mode, outcome):
        return REGISTRY.get_sample_value("sglang:indexcache_indexer_layer_calls_total",
                                         {**{k: str(v) for k, v in labels.items()},
                                          "forward_mode": mode, "outcome": outcome})

    for _ in range(5):
        m.record("DECODE", 3, 9)
    m.record("EXTEND", 3, 9)
    m.record("EXTEND", 12, 0)  # an all-Full forward: no skipped series touched
    m.record("TARGET_VERIFY", 0, 12)
    assert (value("DECODE", "run"), value("DECODE", "skipped")) == (15, 45)
    assert (value("EXTEND", "run"), value("EXTEND", "skipped")) == (15, 9)
    assert value("TARGET_VERIFY", "run") is None and value("TARGET_VERIFY", "skipped") == 12
