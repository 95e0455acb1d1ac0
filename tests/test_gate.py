"""The CUDA backend's fail-closed check, driven on CPU through its real method.

`IndexCacheDSABackend.index_cache_layer` is what the layer hook (`backend/hooks.py`) calls around every
DeepSeek/GLM decoder layer. Here a fake layer loop (the shape of upstream's: each layer gets
the carried top-k, a Full layer returns a new one, a Shared layer passes it on) runs it
without a GPU, and each wrong source a Shared layer could be handed must raise
`IndexCacheError` naming the layer before the layer runs.
"""

import types

import pytest
import torch

from sglang_indexcache.backend.store import IndexCacheError, TopkStore, check_handed_topk
from sglang_indexcache.schedule import IndexCacheFlags, build_schedule

PATTERN = "FSSFSS"
TOPK = 8


def backend(pattern=PATTERN):
    from sglang_indexcache.backend.gpu import IndexCacheDSABackend

    b = object.__new__(IndexCacheDSABackend)  # no GPU: only what the check reads
    b.schedule = build_schedule(len(pattern), {}, flags=IndexCacheFlags(pattern=pattern))
    b.layer_range = range(len(pattern))
    b.last_layer = len(pattern) - 1
    b.index_topk = TOPK
    b.store = TopkStore()
    b.graph_replays = b.dense_forwards = b.prefill_graph_replays = 0
    b._capturing_prefill = None
    b.stats_path = None
    b.use_mha = False
    b.graph_counts, b._capturing, b.metrics = {}, None, None
    b.received_sources, b._received = (), None
    return b


def stage_one(pattern="FSSSFS", start=3):
    """The backend of pipeline stage 1 (layers start..end) under --index-cache-pp-handoff
    transfer: layer 3 stays Shared, its source (layer 0) is on stage 0."""
    b = backend(pattern)
    b.schedule = build_schedule(len(pattern), {}, flags=IndexCacheFlags(pattern=pattern, pp_handoff="transfer"),
                                stage_starts=[0, start])
    b.layer_range = range(start, len(pattern))
    b.received_sources = b.schedule.received_sources(start, len(pattern))
    return b


def run_stage(b, batch, carried, tokens=5):
    """Stage 1's layer loop, starting from what it was handed (SGLang: the received top-k)."""
    hidden = torch.zeros(tokens, 4)
    for i in b.layer_range:
        layer = types.SimpleNamespace(layer_id=i, full=b.schedule.layers[i].runs_indexer)
        out = b.index_cache_layer(lambda lyr, *a, **k: layer_forward(lyr, *a, **k), layer,
                                  (None, hidden, batch), {"prev_topk_indices": carried}, batch, carried)
        carried = out[1]


def layer_forward(layer, positions, hidden, forward_batch, prev_topk_indices=None, produce=True):
    if layer.full and produce:
        rows = (positions if positions is not None else hidden).shape[0]
        return hidden, torch.randint(0, 100, (rows, TOPK), dtype=torch.int32)
    return hidden, prev_topk_indices


def run_forward(b, batch, tokens=5, fault=None, produce=True):
    """One forward through the layer loop; `fault(layer_id, carried, seen)` may swap the carried top-k."""
    hidden = torch.zeros(tokens, 4)
    carried, seen = None, {}
    for i, role in enumerate(b.schedule.layers):
        layer = types.SimpleNamespace(layer_id=i, full=role.runs_indexer)
        if fault is not None:
            carried = fault(i, carried, seen)
        out = b.index_cache_layer(
            lambda lyr, *a, **k: layer_forward(lyr, *a, produce=produce, **k), layer,
            (None, hidden, batch), {"prev_topk_indices": carried}, batch, carried)
        carried = out[1]
        seen[i] = carried
    return seen


def test_clean_forwards_pass_and_count():
    b = backend()
    for n in range(3):
        run_forward(b, object(), tokens=3 + n)
    assert b.store.totals == {"forwards": 3, "indexer_runs": 6, "indexer_skips": 12}


PREVIOUS = {}


def _previous_forward(i, carried, seen):
    return PREVIOUS["topk"] if i == 1 else carried


FAULTS = {
    "the previous forward's top-k": (_previous_forward, "is not layer 0's top-k from this forward"),
    "another micro-batch's top-k": (None, "is not layer 0's top-k from this forward"),
    "none": (lambda i, c, s: None if i == 2 else c, "was handed none"),
    "the wrong shape": (lambda i, c, s: c[:, :4] if i == 1 else c, "is not layer 0's top-k"),
    "a later layer's top-k": (None, "layer 4 is Shared"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_wrong_source_raises_naming_the_layer(name):
    b = backend()
    PREVIOUS["topk"] = run_forward(b, object())[0]
    fault, needle = FAULTS[name]
    if name == "another micro-batch's top-k":
        other = backend()
        foreign = run_forward(other, object())[0]  # micro-batch B's layer 0, same shape
        fault = lambda i, c, s: foreign if i == 1 else c  # noqa: E731
    if name == "a later layer's top-k":
        stash = {}

        def fault(i, c, s):  # layer 4 (source 3) handed layer 3's predecessor chain out of order
            if i == 3:
                stash["late"] = torch.randint(0, 100, (5, TOPK), dtype=torch.int32)
            return stash["late"] if i == 4 else c
    with pytest.raises(IndexCacheError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        run_forward(b, object(), fault=fault)


def test_a_source_that_returned_no_topk_is_refused_in_a_sparse_forward():
    b = backend()
    with pytest.raises(IndexCacheError, match="layer 1 is Shared but its source layer 0 returned no top-k"):
        run_forward(b, object(), produce=False)


def test_dense_prefill_reads_no_topk_and_is_counted():
    b = backend()
    b.use_mha = True  # SGLang's dense-MHA prefill: attention reads no top-k
    run_forward(b, object(), produce=False)
    assert b.dense_forwards == 1
    assert b.store.totals == {"forwards": 1, "indexer_runs": 2, "indexer_skips": 4}


def test_shape_is_checked_even_for_the_right_object():
    t = torch.zeros(3, TOPK, dtype=torch.int32)
    check_handed_topk(1, 0, t, t, (3, TOPK))
    with pytest.raises(IndexCacheError, match=r"needs \(4, 8\)"):
        check_handed_topk(1, 0, t, t, (4, TOPK))


def test_a_shared_layer_under_a_backend_without_the_check_is_refused(monkeypatch):
    """The plugin's layer hook: a forward under any backend without `index_cache_layer` (a
    wrapper, another backend) may run Full layers (the MTP draft's) but never a Shared one."""
    import sglang.srt.model_executor.forward_context as fc

    from sglang_indexcache.backend.hooks import _around_decoder_layer

    monkeypatch.setattr(fc, "get_attn_backend", lambda: types.SimpleNamespace())
    full = types.SimpleNamespace(layer_id=0, self_attn=types.SimpleNamespace(skip_topk=False))
    shared = types.SimpleNamespace(layer_id=5, self_attn=types.SimpleNamespace(skip_topk=True))
    nextn = types.SimpleNamespace(layer_id=0, self_attn=types.SimpleNamespace(skip_topk=True, is_nextn=True))
    ran = []
    original = lambda layer, *a, **k: ran.append(layer.layer_id) or ("h", None)  # noqa: E731
    assert _around_decoder_layer(original, full, None, "h", object()) == ("h", None)
    assert _around_decoder_layer(original, nextn, None, "h", object()) == ("h", None)  # SGLang's NextN flag
    with pytest.raises(IndexCacheError, match="layer 5 is Shared but this forward runs under SimpleNamespace"):
        _around_decoder_layer(original, shared, None, "h", object())
    assert ran == [0, 0]


def test_metrics_are_recorded_per_forward_and_per_replay():
    """With --enable-metrics the backend records every forward it checked and every replay."""
    b = backend()
    seen = []
    b.metrics = types.SimpleNamespace(record=lambda mode, runs, skips: seen.append((mode, runs, skips)))
    batch = types.SimpleNamespace(forward_mode=types.SimpleNamespace(name="DECODE"))
    b._capturing = ("DECODE", 1)
    run_forward(b, batch)
    b._capturing = None
    b._count_replay(("DECODE", 1))
    assert seen == [("DECODE", 2, 4), ("DECODE", 2, 4)]


def test_a_replay_adds_the_counts_seen_at_its_graphs_capture():
    """Capture runs through the hook: the last forward run for a graph is its capture, and its
    indexer calls are kept per graph. A replay adds them; a graph never seen is refused."""
    b = backend("FSSSFS")
    b._capturing = ("DECODE", 4)
    run_forward(b, ("warm-up", 1))
    run_forward(b, ("capture", 1))
    assert b.graph_counts == {("DECODE", 4): (2, 4)}
    before = dict(b.store.totals)
    b._capturing = None
    b._count_replay(("DECODE", 4))
    assert b.graph_replays == 1
    assert b.store.totals == {"forwards": before["forwards"] + 1, "indexer_runs": before["indexer_runs"] + 2,
                              "indexer_skips": before["indexer_skips"] + 4}
    with pytest.raises(IndexCacheError, match=r"replaying the CUDA graph for \('DECODE', 8\), whose capture"):
        b._count_replay(("DECODE", 8))



def test_breakable_prefill_graphs_are_counted_and_an_unseen_one_is_refused():
    """SGLang's default breakable prefill graphs: a replay runs no layer hook, so the capture's
    counts are kept under the graph's key and added per replay, as decode's are; a replay of a
    graph whose capture the backend did not see is refused before it runs."""
    b = backend("FSSSFS")
    seen = []
    b.metrics = types.SimpleNamespace(record=lambda mode, runs, skips: seen.append((mode, runs, skips)))
    extend = types.SimpleNamespace(forward_mode=types.SimpleNamespace(name="EXTEND"))
    key = ("PREFILL_GRAPH", "512")
    b.index_cache_prefill_capture(key)
    run_forward(b, extend)  # a warm-up
    run_forward(b, extend)  # the capture
    b.index_cache_prefill_capture(None)
    run_forward(b, extend)  # an eager extend: nothing captured
    assert b.graph_counts == {key: (2, 4)}
    before = dict(b.store.totals)
    written = []
    b._write_stats = lambda replay: written.append((replay, b.graph_replays, b.prefill_graph_replays))
    b.index_cache_prefill_replay(key, extend)
    b.index_cache_prefill_replay(key, extend)
    assert (b.graph_replays, b.prefill_graph_replays) == (2, 2)
    assert written == [(True, 1, 1), (True, 2, 2)]  # the stats file is written with this replay counted
    assert b.store.totals == {"forwards": before["forwards"] + 2, "indexer_runs": before["indexer_runs"] + 4,
                              "indexer_skips": before["indexer_skips"] + 8}
    assert seen[-2:] == [("EXTEND", 2, 4)] * 2  # Prometheus gets the batch's forward mode
    with pytest.raises(IndexCacheError, match=r"replaying the CUDA graph for \('PREFILL_GRAPH', '1024'\)"):
        b.index_cache_prefill_replay(("PREFILL_GRAPH", "1024"), extend)
    assert b.prefill_graph_replays == 2
    # decode keys and prefill keys sort together in the stats file and the error
    b.graph_counts[("DECODE", 4)] = (2, 4)
    with pytest.raises(IndexCacheError, match=r"captured: \[\('DECODE', 4\), \('PREFILL_GRAPH', '512'\)\]"):
        b._count_replay(("DECODE", 8))
    # a prefill capture alone stops a switch of pattern (the switchable server's guard in the backend)
    b.graph_counts = {key: (2, 4)}
    with pytest.raises(IndexCacheError, match="CUDA graphs were captured under FSSSFS; refusing to switch"):
        b.install_schedule(build_schedule(6, {}, flags=IndexCacheFlags(pattern="FSFSFS")))
    assert b.schedule.pattern == "FSSSFS"


def test_the_prefill_graph_hooks_sit_on_sglangs_breakable_backend():
    """The hooks are installed on SGLang 0.5.23's `BreakableCudaGraphBackend`; its prefill
    runner's captures and replays reach the indexcache backend under the graph's shape key,
    decode's (counted elsewhere) and another backend's (a draft's) do not."""
    from sglang.srt.model_executor.runner.decode_cuda_graph_runner import DecodeCudaGraphRunner
    from sglang.srt.model_executor.runner.prefill_cuda_graph_runner import PrefillCudaGraphRunner
    from sglang.srt.model_executor.runner.shape_key import ShapeKey
    from sglang.srt.model_executor.runner_backend.breakable_cuda_graph_backend import BreakableCudaGraphBackend

    from sglang_indexcache.backend import hooks
    from sglang_indexcache.backend.hooks import prefill_graph_key, register_prefill_graphs

    register_prefill_graphs()
    register_prefill_graphs()  # idempotent
    b = backend("FSSSFS")
    extend = types.SimpleNamespace(forward_mode=types.SimpleNamespace(name="EXTEND"))

    def graph_backend(runner_cls, attn_backend):
        runner = object.__new__(runner_cls)
        runner.model_runner = types.SimpleNamespace(attn_backend=attn_backend)
        gb = object.__new__(BreakableCudaGraphBackend)
        gb._cuda_graph_runner, gb._graphs, gb._outputs = runner, {}, {}
        return gb

    replayed = []
    gb = graph_backend(PrefillCudaGraphRunner, b)
    shape = ShapeKey(size=512)
    gb._graphs[shape] = types.SimpleNamespace(replay=lambda: replayed.append(shape))
    gb._outputs[shape] = "hidden"
    # capture_one's real body needs a GPU: the hook runs around a stand-in that runs the
    # forward function twice (a warm-up, the capture)
    hooks._around_bcg_capture(lambda self, key, fn, *a, **k: [fn(), fn()], gb, shape,
                              lambda: run_forward(b, extend))
    assert b.graph_counts == {("PREFILL_GRAPH", "512"): (2, 4)} and b._capturing_prefill is None
    assert BreakableCudaGraphBackend.replay(gb, shape, extend) == "hidden"  # SGLang's replay, through the hook
    assert replayed == [shape] and b.prefill_graph_replays == 1
    unseen = ShapeKey(size=1024, variant_label="prefix1")
    assert prefill_graph_key(unseen) == ("PREFILL_GRAPH", "1024 variant_label=prefix1")
    gb._graphs[unseen] = types.SimpleNamespace(replay=lambda: replayed.append(unseen))
    with pytest.raises(IndexCacheError, match="1024 variant_label=prefix1"):
        BreakableCudaGraphBackend.replay(gb, unseen, extend)
    assert replayed == [shape]  # refused before the graph ran
    # decode's breakable graphs and a draft's backend pass through uncounted
    for other in (graph_backend(DecodeCudaGraphRunner, b), graph_backend(PrefillCudaGraphRunner, object())):
        other._graphs[unseen], other._outputs[unseen] = gb._graphs[unseen], "out"
        assert BreakableCudaGraphBackend.replay(other, unseen, extend) == "out"
    assert b.prefill_graph_replays == 1


def test_a_transferred_source_is_the_tensor_received_for_this_forward():
    """--index-cache-pp-handoff transfer on the CUDA backend's gate: stage 1's Shared first
    layer attends only on the very tensor its forward received (handed to the backend by the
    model-forward hook before the first layer); anything else, or nothing, is refused naming
    the layer, except in a dense-MHA forward, which reads no top-k."""
    b = stage_one()
    assert b.received_sources == (0,)
    got = torch.zeros(5, TOPK, dtype=torch.int32)
    batch = object()
    b.index_cache_received(batch, got)
    run_stage(b, batch, got)
    assert b.store.counters.received == [0] and b.store.counters.reused == {3: 0, 5: 4}
    # handed a copy (or another micro-batch's tensor) instead of what was received
    b.index_cache_received(batch, got)
    with pytest.raises(IndexCacheError, match="layer 3 is Shared"):
        run_stage(b, batch, got.clone())
    # received for another forward: this one received nothing
    b.index_cache_received(object(), got)
    with pytest.raises(IndexCacheError, match=r"layer 3 \(Shared\).*source layer 0 wrote no top-k"):
        run_stage(b, batch, got)
    # received rows for another token count
    b.index_cache_received(batch, torch.zeros(4, TOPK, dtype=torch.int32))
    with pytest.raises(IndexCacheError, match="covers 4 tokens, this batch has 5"):
        run_stage(b, batch, got)
    b.use_mha = True  # dense: SGLang sends no top-k and attention reads none
    run_stage(b, object(), None)


class OwedOutput:
    """Stands for SGLang's `layer_boundary` handle of a deferred all-reduce: what a TP rank's
    layer past the first receives as hidden_states under breakable prefill CUDA graphs. It has
    no shape (session 7, TP 2 on two H200s: the check read hidden_states.shape and the server
    died at graph capture)."""


def test_rows_are_counted_from_positions_when_hidden_states_is_an_opaque_handle():
    b = backend()
    batch, tokens, carried = object(), 6, None
    positions = torch.arange(tokens)
    for i, role in enumerate(b.schedule.layers):
        layer = types.SimpleNamespace(layer_id=i, full=role.runs_indexer)
        hidden = torch.zeros(tokens, 4) if i == 0 else OwedOutput()
        out = b.index_cache_layer(layer_forward, layer, (positions, hidden, batch),
                                  {"prev_topk_indices": carried}, batch, carried)
        carried = out[1]
        assert carried.shape == (tokens, TOPK)
    assert b.store.totals["forwards"] == 1 and b.store.totals["indexer_skips"] == PATTERN.count("S")
    # the row count still guards the shape: a Shared layer handed a top-k of other rows is refused
    with pytest.raises(RuntimeError, match="layer 1"):
        bad = torch.zeros(tokens + 1, TOPK, dtype=torch.int32)
        b.store.begin(batch)
        b.store.put(0, bad, batch=batch, num_tokens=tokens + 1)
        b.index_cache_layer(layer_forward, types.SimpleNamespace(layer_id=1, full=False),
                            (positions, OwedOutput(), batch), {"prev_topk_indices": bad}, batch, bad)
