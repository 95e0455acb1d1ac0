"""Unit-scale activations and indexers for dummy-weight benchmarks (`integration/bench_weights.py`).

A stand-in for the path to SGLang's indexer: token embedding, an RMS norm (epsilon 1e-5, as
GLM's), the attention's q_a projection and its norm (the indexer's q input), and an indexer
with SGLang's attribute names (wq_b, wk, weights_proj, k_norm) whose scores are formed the way
SGLang's are (sum over heads of relu(q . k) * w, times head_dim^-0.5 and heads^-0.5). All start
uniform in +-1e-3, SGLang's dummy weights. A CPU server on glm-tiny gave scores of 6.6e-19
under dummy weights; rescaling only the indexer there was not enough (2e-4): the residual
stream sits below the norms' epsilon, so the inputs were the problem too.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from sglang_indexcache.bench.topk import fp16_bin
from sglang_indexcache.integration import bench_weights
from sglang_indexcache.integration.bench_weights import rescale

VOCAB, HIDDEN, Q_LORA, HEADS, DIM = 1000, 512, 192, 8, 128


class FakeRMSNorm(nn.Module):
    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class FakeIndexer(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq_b = nn.Linear(Q_LORA, HEADS * DIM, bias=False)
        self.wk = nn.Linear(HIDDEN, DIM, bias=False)
        self.weights_proj = nn.Linear(HIDDEN, HEADS, bias=False)
        self.k_norm = nn.LayerNorm(DIM)

    def scores(self, x: torch.Tensor, q_lora: torch.Tensor) -> torch.Tensor:
        q = self.wq_b(q_lora).view(-1, HEADS, DIM)
        k = self.k_norm(self.wk(x))
        w = self.weights_proj(x) * HEADS ** -0.5 * DIM ** -0.5
        return (torch.relu(torch.einsum("qhd,kd->qhk", q, k)) * w[:, :, None]).sum(1)


class FakeHead(nn.Embedding):  # SGLang's ParallelLMHead subclasses its embedding
    pass


class FakeLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = FakeRMSNorm(HIDDEN)
        self.q_a_proj = nn.Linear(HIDDEN, Q_LORA, bias=False)
        self.q_a_layernorm = FakeRMSNorm(Q_LORA)
        self.indexer = FakeIndexer()


class FakeModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList([FakeLayer() for _ in range(3)])
        self.lm_head = FakeHead(VOCAB, HIDDEN)
        for p in self.parameters():  # SGLang's dummy weights
            nn.init.uniform_(p, -1e-3, 1e-3)

    def scores(self, ids: torch.Tensor, layer: int = 0) -> torch.Tensor:
        lay = self.layers[layer]
        x = lay.input_layernorm(self.embed_tokens(ids))
        return lay.indexer.scores(x, lay.q_a_layernorm(lay.q_a_proj(x)))


def _rescale(model) -> dict:
    return rescale(model, FakeIndexer, (FakeRMSNorm, nn.LayerNorm), (nn.Embedding,), (FakeHead,))


def test_unit_scale_scores_instead_of_fp16_zero():
    """Under dummy weights every score is 0 in fp16 (all in one or two of SGLang's top-k bins);
    rescaled, the scores are of order 1 and no fp16 bin holds more than a few percent of a row."""
    torch.manual_seed(0)
    model, ids = FakeModel(), torch.randint(0, VOCAB, (2048,), generator=torch.Generator().manual_seed(1))
    head = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        before = model.scores(ids)
        assert bool((before.half() == 0).all()), before.abs().max()
        assert _rescale(model) == {"norms": 9, "embeddings": 1, "indexers": 3}
        after = model.scores(ids)
    assert 0.05 < after.abs().median() < 5, after.abs().median()
    assert int(torch.bincount(fp16_bin(after[-1])).max()) < 0.1 * after.shape[1]
    idx = model.layers[0].indexer
    assert torch.equal(idx.k_norm.weight, torch.ones(DIM)) and not idx.k_norm.bias.any()
    assert torch.equal(model.lm_head.weight, head), "the output head keeps its dummy weights"
    assert model.layers[0].q_a_proj.weight.abs().max() <= 1e-3, "other weights keep their dummy values"


def test_every_server_gets_the_same_weights():
    """`dsa` and `indexcache` servers must be comparable: the draws are seeded by name."""
    torch.manual_seed(0)
    a = FakeModel()
    b = FakeModel()
    b.load_state_dict(a.state_dict())
    _rescale(a), _rescale(b)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    l0, l1 = a.layers[0].indexer, a.layers[1].indexer
    assert not torch.equal(l0.wq_b.weight, l1.wq_b.weight)  # layers differ from each other


def test_a_quantized_indexer_is_refused():
    model = FakeModel()
    model.layers[1].indexer.wk.weight = nn.Parameter(torch.zeros(DIM, HIDDEN, dtype=torch.float8_e4m3fn),
                                                     requires_grad=False)
    with pytest.raises(RuntimeError, match=r"layers\.1\.indexer\.wk is torch.float8_e4m3fn"):
        _rescale(model)


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
    from sglang.srt.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    assert issubclass(ParallelLMHead, VocabParallelEmbedding)  # why rescale() takes head classes
    init = inspect.getsource(Indexer.__init__)
    for attr in (*bench_weights.PROJECTIONS, "k_norm"):
        assert f"self.{attr} = " in init, attr
    monkeypatch.setenv(bench_weights.ENV, "big")
    with pytest.raises(RuntimeError, match="the only value is 'unit'"):
        bench_weights.after_dummy_weights(None, nn.Module())
