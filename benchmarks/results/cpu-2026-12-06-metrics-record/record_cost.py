# .venv/bin/python benchmarks/results/cpu-2026-12-06-metrics-record/record_cost.py  (2-core CPU machine, Python 3.11)
"""Host time of one `IndexerMetrics.record` (once per replayed decode graph with --enable-metrics)
against what it did until session 43: two increments of the labelled Prometheus counters, in
multiprocess mode as SGLang runs it (PROMETHEUS_MULTIPROC_DIR set before prometheus_client loads)."""
import os
import tempfile
import timeit

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from sglang_indexcache.backend.metrics import IndexerMetrics  # noqa: E402
from sglang_indexcache.schedule import IndexCacheFlags, build_schedule  # noqa: E402

m = IndexerMetrics(build_schedule(12, {}, flags=IndexCacheFlags(pattern="FSSSFSSSFSSS")),
                   {"model_name": "b", "tp_rank": 0, "pp_rank": 0})
n = 200_000
for name, f in [("record (buffered)", lambda: m.record("DECODE", 3, 9)),
                ("two labelled incs (the old record)",
                 lambda: (m._child("DECODE", "run").inc(3), m._child("DECODE", "skipped").inc(9)))]:
    best = min(timeit.repeat(f, number=n, repeat=5)) / n * 1e6
    print(f"{name}: {best:.3f} us")
m.close()
