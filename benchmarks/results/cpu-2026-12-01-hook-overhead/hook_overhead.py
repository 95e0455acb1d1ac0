# .venv/bin/python benchmarks/results/cpu-2026-12-01-hook-overhead/hook_overhead.py  (2-core CPU machine, Python 3.11)
"""Host time of the indexcache backend's per-layer check (`IndexCacheDSABackend.index_cache_layer`)
around a layer that does nothing: what our backend adds per decoder-layer call of an eager
forward (CPU, Python only; the GPU backend's own method, bound to a stand-in without SGLang)."""
import statistics, time
from types import SimpleNamespace
import torch
from sglang_indexcache.backend.gpu import IndexCacheDSABackend
from sglang_indexcache.backend.store import TopkStore
from sglang_indexcache.schedule import IndexCacheFlags, build_schedule

L, TOPK, ROWS = 12, 2048, 1
sched = build_schedule(L, {}, flags=IndexCacheFlags(pattern="FSSSFSSSFSSS"))
be = SimpleNamespace(store=TopkStore(), schedule=sched, layer_range=(0, L), last_layer=L - 1, received_sources=(),
                     index_topk=TOPK, _capturing=None, _capturing_prefill=None, metrics=None, stats_path=None, graph_counts={},
                     dense_forwards=0, use_mha=False, _received=None)
be._write_stats = lambda **k: None
method = IndexCacheDSABackend.index_cache_layer
pos, hid = torch.zeros(ROWS, dtype=torch.long), torch.zeros(ROWS, 8)
layers = [SimpleNamespace(layer_id=i) for i in range(L)]
topk = torch.zeros(ROWS, TOPK, dtype=torch.int32)

def layer_full(layer, *a, **k): return (hid, topk)
def one_forward(fb):
    prev = None
    for lay in layers:
        out = method(be, layer_full, lay, (pos, hid, fb), {}, fb, prev)
        prev = out[1] if sched.layers[lay.layer_id].role.name != "SHARED" else prev
def bare_forward(fb):
    for lay in layers: layer_full(lay, pos, hid, fb)

for f in (one_forward, bare_forward):
    for _ in range(200): f(object())
res = {}
for name, f in (("with check", one_forward), ("bare", bare_forward)):
    ts = []
    for _ in range(20):
        t0 = time.perf_counter()
        for _ in range(500): f(object())
        ts.append((time.perf_counter() - t0) / 500)
    res[name] = statistics.median(ts)
per_layer = (res["with check"] - res["bare"]) / L
print(f"12-layer forward, FSSSFSSSFSSS: {res['with check']*1e6:.1f} us with the check, {res['bare']*1e6:.1f} us bare; "
      f"the check adds {per_layer*1e6:.2f} us per layer call ({per_layer*L*1e6:.1f} us per forward)")
