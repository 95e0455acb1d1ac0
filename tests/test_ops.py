"""The torch DSA operators against transformers' indexers and a float64 dense reference."""

import pytest
import torch
from transformers import DeepseekV32Config, GlmMoeDsaConfig
from transformers.models.deepseek_v32.modeling_deepseek_v32 import DeepseekV32Indexer, DeepseekV32RotaryEmbedding
from transformers.models.glm_moe_dsa.modeling_glm_moe_dsa import GlmMoeDsaIndexer, GlmMoeDsaRotaryEmbedding

from sglang_indexcache.backend.ops import apply_rope, causal_topk, index_scores, indexer_project, sparse_mla

DIMS = dict(hidden_size=64, q_lora_rank=32, qk_rope_head_dim=64, index_n_heads=32, index_head_dim=128, index_topk=16)


def _indexer(kind):
    if kind == "glm":
        config = GlmMoeDsaConfig(**DIMS)
        return config, GlmMoeDsaIndexer(config, 0).float().eval(), GlmMoeDsaRotaryEmbedding(config), True
    config = DeepseekV32Config(**DIMS)
    return config, DeepseekV32Indexer(config, 0).float().eval(), DeepseekV32RotaryEmbedding(config), False


@pytest.mark.parametrize("kind", ["glm", "deepseek"])
def test_indexer_topk_equals_transformers(kind):
    torch.manual_seed(0)
    config, ref, rope, interleaved = _indexer(kind)
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.3)
    S = 96
    x, q_lora = torch.randn(1, S, 64), torch.randn(1, S, 32)
    pos = torch.arange(S)[None]
    cos, sin = rope(x, pos)
    mask = torch.tril(torch.ones(S, S, dtype=torch.bool))[None]
    expected = ref(x, q_lora, (cos, sin), mask, pos)[0]  # [S, topk]
    half = config.qk_rope_head_dim // 2
    q, k, w = indexer_project(
        x[0], q_lora[0], wq_b=ref.wq_b.weight, wk=ref.wk.weight, weights_proj=ref.weights_proj.weight,
        k_norm_weight=ref.k_norm.weight, k_norm_bias=ref.k_norm.bias, k_norm_eps=ref.k_norm.eps,
        cos=cos[0, :, :half], sin=sin[0, :, :half], n_heads=32, rope_dim=config.qk_rope_head_dim,
        interleaved=interleaved,
    )
    got = causal_topk(index_scores(q, w, k, softmax_scale=ref.softmax_scale), torch.arange(S), 16)
    for t in range(S):
        want = set(expected[t].tolist()) if t >= 15 else set(range(t + 1))
        assert set(got[t].tolist()) - {-1} == want, t
    assert (got[:15] == -1).sum() == sum(16 - (t + 1) for t in range(15))


def test_rope_variants_differ_and_preserve_norms():
    x = torch.randn(3, 8)
    ang = torch.rand(3, 4)
    a = apply_rope(x, ang.cos(), ang.sin(), interleaved=True)
    b = apply_rope(x, ang.cos(), ang.sin(), interleaved=False)
    assert not torch.allclose(a, b)
    for y in (a, b):
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # Interleaved keeps pairs in place: pair (x0, x1) rotated by the first angle.
    c, s = ang[0, 0].cos(), ang[0, 0].sin()
    torch.testing.assert_close(a[0, :2], torch.stack([x[0, 0] * c - x[0, 1] * s, x[0, 1] * c + x[0, 0] * s]))


def test_causal_topk_short_rows_and_ties_outside_the_window():
    scores = torch.tensor([[5.0, 9.0, 1.0, 7.0]] * 4)
    got = causal_topk(scores, torch.arange(4), 2)
    assert got.tolist() == [[0, -1], [1, 0], [1, 0], [1, 3]]


def test_sparse_mla_equals_dense_masked_attention_in_float64():
    torch.manual_seed(1)
    T, H, L, R, S, K = 5, 4, 16, 8, 12, 6
    q = torch.randn(T, H, L + R, dtype=torch.float64)
    cache = torch.randn(S, L + R, dtype=torch.float64)
    idx = torch.stack([torch.randperm(S)[:K] for _ in range(T)]).to(torch.int32)
    idx[0, 3:] = -1
    out = sparse_mla(q.float(), cache.float()[idx.clamp(min=0).long()], idx, sm_scale=0.2, kv_lora_rank=L)
    # Dense reference: attention over all S keys with a -inf mask outside the selection.
    logits = torch.einsum("thc,sc->ths", q, cache) * 0.2
    keep = torch.zeros(T, S, dtype=torch.bool)
    for t in range(T):
        keep[t, idx[t][idx[t] >= 0].long()] = True
    probs = torch.softmax(logits.masked_fill(~keep[:, None, :], float("-inf")), dim=-1)
    want = torch.einsum("ths,sl->thl", probs, cache[:, :L])
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
