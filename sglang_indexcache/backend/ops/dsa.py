"""DeepSeek Sparse Attention in plain torch: lightning indexer, top-k, sparse MLA.

Same math as the models' reference code (transformers `glm_moe_dsa` / `deepseek_v32`):

    index_score[t, s] = sum_h w[t, h] * relu(scale * q[t, h, :] . k[s, :])   (s <= pos[t])
    selected[t]       = top-min(k, pos[t] + 1) of index_score[t, :]
    out[t, h]         = softmax_s(q_lat[t, h] . kv[s] * sm_scale) @ kv[s, :L]  over s in selected[t]

Keys stay unquantised (no fp8, no Hadamard rotation: the rotation is orthogonal and
leaves dot products unchanged). Everything is accumulated in float32. Shapes use
T = query tokens, S = key positions, H = heads, D = index head dim, L = kv_lora_rank,
R = rope dim, K = top-k width.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

# Query rows scored at once by `index_scores`: bounds the [rows, H, S] intermediate.
_SCORE_ROWS = 256


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool) -> torch.Tensor:
    """Rotate the last dimension of x ([..., R]) by per-position angles.

    cos, sin: [..., R/2], broadcastable to x[..., :R/2].
    interleaved=True rotates pairs (x0, x1), (x2, x3), ... (GLM-MoE-DSA's indexer, GPT-J
    style) and keeps them in place; interleaved=False rotates (x_i, x_{i+R/2}) (DeepSeek-V3.2's
    indexer, "neox" / half-split). The result is in x's layout; dot products between two
    tensors rotated the same way equal those of the reference implementations.
    """
    x = x.float()
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return out.flatten(-2)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def indexer_project(
    x: torch.Tensor,
    q_lora: torch.Tensor,
    *,
    wq_b: torch.Tensor,
    wk: torch.Tensor,
    weights_proj: torch.Tensor,
    k_norm_weight: torch.Tensor,
    k_norm_bias: Optional[torch.Tensor],
    k_norm_eps: float,
    cos: torch.Tensor,
    sin: torch.Tensor,
    n_heads: int,
    rope_dim: int,
    interleaved: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The indexer's projections for T new tokens.

    x: [T, hidden]; q_lora: [T, q_lora_rank]; cos, sin: [T, R/2] at the tokens' positions.
    wq_b: [H*D, q_lora_rank]; wk: [D, hidden]; weights_proj: [H, hidden].
    k_norm: LayerNorm when k_norm_bias is given, RMSNorm otherwise.
    Returns q [T, H, D] and k [T, D] (rope applied to the first R dims) and the head
    weights w [T, H], already multiplied by H**-0.5. All float32.
    """
    T = x.shape[0]
    x32, q32 = x.float(), q_lora.float()
    q = (q32 @ wq_b.float().t()).view(T, n_heads, -1)  # [T, H, D]
    k = x32 @ wk.float().t()  # [T, D]
    if k_norm_bias is not None:
        k = F.layer_norm(k, (k.shape[-1],), k_norm_weight.float(), k_norm_bias.float(), k_norm_eps)
    else:
        k = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + k_norm_eps) * k_norm_weight.float()
    q_rot = apply_rope(q[..., :rope_dim], cos.float()[:, None, :], sin.float()[:, None, :], interleaved=interleaved)
    k_rot = apply_rope(k[..., :rope_dim], cos.float(), sin.float(), interleaved=interleaved)
    q = torch.cat((q_rot, q[..., rope_dim:]), dim=-1)
    k = torch.cat((k_rot, k[..., rope_dim:]), dim=-1)
    w = (x32 @ weights_proj.float().t()) * n_heads**-0.5  # [T, H]
    return q, k, w


def index_scores(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, *, softmax_scale: float) -> torch.Tensor:
    """Lightning-indexer logits. q: [T, H, D], w: [T, H], k: [S, D] -> [T, S] float32."""
    q, w, k = q.float(), w.float(), k.float()
    out = torch.empty(q.shape[0], k.shape[0], dtype=torch.float32, device=q.device)
    for i in range(0, q.shape[0], _SCORE_ROWS):
        rows = slice(i, i + _SCORE_ROWS)
        logits = torch.einsum("thd,sd->ths", q[rows], k) * softmax_scale  # [rows, H, S]
        out[rows] = torch.einsum("th,ths->ts", w[rows], F.relu(logits))
    return out


def causal_topk(scores: torch.Tensor, q_pos: torch.Tensor, topk: int) -> torch.Tensor:
    """Top-k key positions per query among keys 0..q_pos[t].

    scores: [T, S]; q_pos: [T] (each < S). Returns [T, topk] int32 positions, -1 where a
    query has fewer than topk visible keys (those queries get all of their keys).
    """
    S = scores.shape[1]
    visible = torch.arange(S, device=scores.device)[None, :] <= q_pos[:, None]
    masked = scores.masked_fill(~visible, float("-inf"))
    width = min(topk, S)
    values, idx = masked.topk(width, dim=-1)
    idx = idx.to(torch.int32).masked_fill(values == float("-inf"), -1)
    if width < topk:
        idx = F.pad(idx, (0, topk - width), value=-1)
    return idx


def sparse_mla(
    q_latent: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    *,
    sm_scale: float,
    kv_lora_rank: int,
) -> torch.Tensor:
    """Absorbed MLA over selected keys.

    q_latent: [T, H, L+R] (absorbed nope part then rope part); kv: [T, K, L+R], the rows of
    the latent cache at each query's selected positions; indices: [T, K], -1 = unused slot.
    Returns [T, H, L] float32: softmax(q.kv * sm_scale) @ kv[..., :L].
    """
    q, kv = q_latent.float(), kv.float()
    logits = torch.einsum("thc,tkc->thk", q, kv) * sm_scale  # [T, H, K]
    logits = logits.masked_fill((indices < 0)[:, None, :], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.einsum("thk,tkl->thl", probs, kv[..., :kv_lora_rank])
