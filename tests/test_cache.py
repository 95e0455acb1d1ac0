"""The per-forward top-k store fails closed (DESIGN failure modes 1, 4, 5, 6)."""

import pytest

from sglang_indexcache.backend.store import IndexCacheError, TopkStore


def test_shared_layer_reads_its_sources_topk_from_the_same_forward():
    s = TopkStore()
    s.begin("b1")
    s.put(0, "idx0", batch="b1", num_tokens=5)
    assert s.get(3, 0, batch="b1", num_tokens=5) == "idx0"
    assert s.own(0, batch="b1", num_tokens=5) == "idx0"
    assert s.counters.ran == [0] and s.counters.reused == {3: 0}
    assert (s.counters.indexer_runs, s.counters.indexer_skips) == (1, 1)


def test_source_not_written_in_this_forward_names_the_layer():
    s = TopkStore()
    s.begin("b1")
    with pytest.raises(IndexCacheError, match=r"layer 1 \(Shared\).*source layer 0 wrote no top-k"):
        s.get(1, 0, batch="b1", num_tokens=5)


def test_previous_forwards_topk_is_never_reused():
    s = TopkStore()
    s.begin("b1")
    s.put(0, "old", batch="b1", num_tokens=5)
    s.begin("b1")  # the next forward, even of an identical batch
    with pytest.raises(IndexCacheError, match="layer 2"):
        s.get(2, 0, batch="b1", num_tokens=5)


def test_another_micro_batch_cannot_read_or_write():
    s = TopkStore()
    s.begin("mb0")
    s.put(0, "mb0-idx", batch="mb0", num_tokens=5)
    with pytest.raises(IndexCacheError, match="outside the forward"):
        s.get(1, 0, batch="mb1", num_tokens=5)
    with pytest.raises(IndexCacheError, match="outside the forward"):
        s.put(0, "mb1-idx", batch="mb1", num_tokens=5)


def test_token_count_mismatch_is_refused():
    s = TopkStore()
    s.begin("b")
    s.put(0, "idx", batch="b", num_tokens=7)
    with pytest.raises(IndexCacheError, match="covers 7 tokens, this batch has 6"):
        s.get(1, 0, batch="b", num_tokens=6)


@pytest.mark.parametrize("source", [None, 4, 5])
def test_source_must_be_an_earlier_layer(source):
    s = TopkStore()
    s.begin("b")
    with pytest.raises(IndexCacheError, match="not an earlier layer"):
        s.get(4, source, batch="b", num_tokens=1)


def test_full_layer_without_its_own_topk_is_refused_and_nothing_before_begin():
    s = TopkStore()
    with pytest.raises(IndexCacheError):
        s.put(0, "x", batch=None, num_tokens=1)
    s.begin("b")
    with pytest.raises(IndexCacheError, match="layer 2 \\(Full\\).*its indexer did not run"):
        s.own(2, batch="b", num_tokens=1)


def test_totals_accumulate_across_forwards():
    s = TopkStore()
    for _ in range(3):
        s.begin("b")
        s.put(0, "i", batch="b", num_tokens=1)
        s.get(1, 0, batch="b", num_tokens=1)
        s.get(2, 0, batch="b", num_tokens=1)
    assert s.totals == {"forwards": 3, "indexer_runs": 3, "indexer_skips": 6}


@pytest.mark.parametrize("fault, needle", [
    ("previous", r"layer 2 \(Shared\) was handed the top-k of layer 0 from forward 1"),
    ("foreign", r"layer 2 \(Shared\) was handed the top-k of layer 0 from forward 2 of batch \('foreign'"),
    ("none", r"layer 2 \(Shared\) has no top-k in forward 2"),
    ("shape", r"layer 2 \(Shared\): layer 0's top-k covers 6 tokens, this batch has 5"),
    ("later", r"layer 2 \(Shared\) was handed the top-k of layer 3"),
])
def test_injected_faults_are_refused_naming_the_layer(monkeypatch, fault, needle):
    from sglang_indexcache.backend.store import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, fault)
    store = TopkStore()
    for forward in range(2):
        store.begin("b")
        store.put(0, f"topk-{forward}", batch="b", num_tokens=5)
        assert store.own(0, batch="b", num_tokens=5) == f"topk-{forward}"  # Full reads are not faulted
    with pytest.raises(IndexCacheError, match=needle):
        store.get(2, 0, batch="b", num_tokens=5)


def test_unknown_fault_name_is_refused(monkeypatch):
    from sglang_indexcache.backend.store import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "stale")
    with pytest.raises(ValueError, match="not one of"):
        TopkStore()


def test_a_received_topk_serves_this_stage_for_this_forward_only():
    """--index-cache-pp-handoff transfer: the previous stage's top-k of layer 38, received by the
    stage starting at layer 39, serves that stage's Shared layers in this forward of this batch
    (micro-batch) only, counts no indexer run, and its row count is checked like a local one."""
    s = TopkStore()
    s.begin("mb0")
    s.receive(38, "recv", batch="mb0", num_tokens=5)
    assert s.get(39, 38, batch="mb0", num_tokens=5) == "recv"
    assert s.counters.received == [38] and s.counters.indexer_runs == 0 and s.counters.reused == {39: 38}
    with pytest.raises(IndexCacheError, match="covers 5 tokens, this batch has 4"):
        s.get(40, 38, batch="mb0", num_tokens=4)
    with pytest.raises(IndexCacheError, match="outside the forward"):
        s.receive(38, "other", batch="mb1", num_tokens=5)  # another micro-batch's
    s.begin("mb1")  # the next micro-batch received nothing: its readers fail
    with pytest.raises(IndexCacheError, match=r"layer 39 \(Shared\).*source layer 38 wrote no top-k"):
        s.get(39, 38, batch="mb1", num_tokens=5)
