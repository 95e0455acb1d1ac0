"""Unit-scale indexer weights for dummy-weight benchmarks (`integration/bench_weights.py`).

The indexer here is a stand-in with SGLang's attribute names (wq_b, wk, weights_proj, k_norm)
fed activations at the dummy loader's scale; its scores are computed the way SGLang's indexer
forms them (sum over heads of relu(q . k) * w, times head_dim^-0.5 and heads^-0.5).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from sglang_indexcache.integration import bench_weights
from sglang_indexcache.integration.bench_weights import DUMMY_RMS, rescale_indexers

HIDDEN, Q_LORA, HEADS, DIM = 512, 192, 8, 128


class FakeIndexer(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq_b = nn.Linear(Q_LORA, HEADS * DIM, bias=False)
        self.wk = nn.Linear(HIDDEN, DIM, bias=False)
        self.weights_proj = nn.Linear(HIDDEN, HEADS, bias=False)
        self.k_norm = nn.LayerNorm(DIM)
        for p in self.parameters():  # SGLang's dummy weights
            nn.init.uniform_(p, -1e-3, 1e-3)

    def scores(self, x: torch.Tensor, q_lora: torch.Tensor) -> torch.Tensor:
        q = self.wq_b(q_lora).view(-1, HEADS, DIM)
        k = self.k_norm(self.wk(x))
        w = self.weights_proj(x) * HEADS ** -0.5 * DIM ** -0.5
        return (torch.relu(torch.einsum("qhd,kd->qhk", q, k)) * w[:, :, None]).sum(1)


def _model():
    torch.manual_seed(0)
    return nn.ModuleDict({"layers": nn.ModuleList([nn.ModuleDict({"indexer": FakeIndexer()}) for _ in range(3)])})


def _inputs(n: int):
    g = torch.Generator().manual_seed(1)  # normed activations at the dummy weights' scale
    return torch.randn(n, HIDDEN, generator=g) * DUMMY_RMS, torch.randn(n, Q_LORA, generator=g) * DUMMY_RMS


def test_unit_scale_indexers_score_beyond_fp16_zero():
    """Under dummy weights every score is 0 in fp16 (all in one or two of SGLang's top-k bins);
    rescaled, the scores are of order 1 and no fp16 bin holds more than a few percent of a row."""
    model, (x, q) = _model(), _inputs(2048)
    idx = model["layers"][0]["indexer"]
    with torch.no_grad():
        before = idx.scores(x, q)
        assert bool((before.half() == 0).all())
        assert rescale_indexers(model, FakeIndexer) == 3
        after = idx.scores(x, q)
    assert 0.05 < after.abs().median() < 5, after.abs().median()
    key = (after[-1].half().view(torch.int16).int() >> 8) & 0xFF
    assert int(torch.bincount(key).max()) < 0.1 * after.shape[1]
    assert torch.equal(idx.k_norm.weight, torch.ones(DIM)) and not idx.k_norm.bias.any()


def test_every_server_gets_the_same_indexer_weights():
    """`dsa` and `indexcache` servers must be comparable: the weights are seeded by module name."""
    a, b = _model(), _model()
    for p in b.parameters():  # a different dummy draw underneath
        nn.init.uniform_(p, -1e-3, 1e-3)
    rescale_indexers(a, FakeIndexer), rescale_indexers(b, FakeIndexer)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    l0, l1 = a["layers"][0]["indexer"], a["layers"][1]["indexer"]
    assert not torch.equal(l0.wq_b.weight, l1.wq_b.weight)  # layers differ from each other


def test_a_quantized_indexer_is_refused():
    model = _model()
    model["layers"][1]["indexer"].wk.weight = nn.Parameter(torch.zeros(DIM, HIDDEN, dtype=torch.float8_e4m3fn),
                                                         requires_grad=False)
    with pytest.raises(RuntimeError, match=r"layers\.1\.indexer\.wk is torch.float8_e4m3fn"):
        rescale_indexers(model, FakeIndexer)


def test_registered_only_where_asked_and_aimed_at_sglang(monkeypatch):
    """The hook wraps the dummy loader's initialiser only with the variable set; its target and
    the indexer attributes it rewrites exist in this SGLang."""
    import importlib

    calls = []

    class Registry:
        @staticmethod
        def register(target, fn, kind):
            calls.append((target, fn, kind))

    kinds = type("K", (), {"AFTER": "after"})
    monkeypatch.delenv(bench_weights.ENV, raising=False)
    bench_weights.register(Registry, kinds)
    assert calls == []
    monkeypatch.setenv(bench_weights.ENV, "unit")
    bench_weights.register(Registry, kinds)
    assert calls == [(bench_weights.TARGET, bench_weights.after_dummy_weights, "after")]
    module, name = bench_weights.TARGET.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

    init = inspect.getsource(Indexer.__init__)
    for attr in (*bench_weights.PROJECTIONS, "k_norm"):
        assert f"self.{attr} = " in init, attr
    monkeypatch.setenv(bench_weights.ENV, "big")
    with pytest.raises(RuntimeError, match="the only value is 'unit'"):
        bench_weights.after_dummy_weights(None, nn.Module())
