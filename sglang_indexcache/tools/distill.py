"""Training-aware IndexCache: train the retained indexers with the multi-layer KL loss.

For a pattern, a Full layer l serves itself and the Shared layers l+1..l+m after it. Its
indexer is trained, everything else frozen, on

    L_l = 1/(m+1) * sum_{j=0..m} KL( p_{l+j} || q_l )

with p_{l+j} the head-averaged attention distribution of layer l+j (dense attention: every
indexer selects all keys while the targets are computed) and q_l = softmax over the
causal keys of layer l's indexer scores. The paper's loss; m = 0 is DSA's indexer warm-up.

`scores()` recomputes an indexer's scores with gradients, exactly as transformers'
(no-grad) GlmMoeDsaIndexer / DeepseekV32Indexer do before their top-k.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

from sglang_indexcache.schedule import pattern_sources


def groups(pattern: str) -> Dict[int, List[int]]:
    """{Full layer: [itself, the Shared layers it serves]}."""
    out: Dict[int, List[int]] = {}
    for i, src in enumerate(pattern_sources(pattern)):
        out.setdefault(i if src is None else src, []).append(i)
    return out


def _rope_fn(indexer):
    name = type(indexer).__name__
    if name.startswith("GlmMoeDsa"):
        from transformers.models.glm_moe_dsa.modeling_glm_moe_dsa import apply_rotary_pos_emb_interleave

        return apply_rotary_pos_emb_interleave
    from transformers.models.deepseek_v32.modeling_deepseek_v32 import apply_rotary_pos_emb

    return apply_rotary_pos_emb


def scores(indexer, hidden_states, q_resid, position_embeddings, attention_mask) -> torch.Tensor:
    """[B, S, T] index scores (causal mask applied as -inf), with gradients."""
    B, S, _ = hidden_states.shape
    cos, sin = position_embeddings
    q = indexer.wq_b(q_resid).view(B, S, indexer.n_heads, indexer.head_dim)
    r = indexer.qk_rope_head_dim
    q_rot, q_pass = torch.split(q, [r, indexer.head_dim - r], dim=-1)
    k = indexer.k_norm(indexer.wk(hidden_states)).unsqueeze(2)
    k_rot, k_pass = torch.split(k, [r, indexer.head_dim - r], dim=-1)
    q_rot, k_rot = _rope_fn(indexer)(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
    q = torch.cat([q_rot, q_pass], dim=-1)
    k = torch.cat([k_rot, k_pass], dim=-1).squeeze(2)
    s = F.relu(torch.matmul(q.float(), k.transpose(-1, -2).float().unsqueeze(1)) * indexer.softmax_scale)
    w = indexer.weights_proj(hidden_states.to(indexer.weights_proj.weight.dtype)).float() * (indexer.n_heads ** -0.5)
    out = torch.matmul(w.unsqueeze(-2), s).squeeze(-2)
    if attention_mask.dtype == torch.bool:
        return out.masked_fill(~attention_mask, float("-inf"))
    return out + attention_mask


@contextlib.contextmanager
def capture(model, *, dense: bool, detach_inputs: bool = True):
    """Every indexer records its scores (with grad) in `store[layer]`; with `dense` every
    indexer selects all keys (dense attention)."""
    store: Dict[int, torch.Tensor] = {}
    saved = []
    for i, layer in enumerate(model.model.layers):
        idx = getattr(layer.self_attn, "indexer", None)
        if idx is None:
            continue
        saved.append((idx, idx.forward, idx.index_topk))

        def fwd(hidden_states, q_resid, position_embeddings, attention_mask, position_ids=None,
                past_key_values=None, _idx=idx, _i=i):
            h, q = (hidden_states.detach(), q_resid.detach()) if detach_inputs else (hidden_states, q_resid)
            sc = scores(_idx, h, q, position_embeddings, attention_mask)
            store[_i] = sc
            k = sc.shape[-1] if dense else min(_idx.index_topk, sc.shape[-1])
            return sc.detach().topk(k, dim=-1).indices.to(torch.int32)

        idx.forward = fwd
    try:
        yield store
    finally:
        for idx, f, k in saved:
            idx.forward = f
            idx.index_topk = k


def kl(p_attn: torch.Tensor, index_scores: torch.Tensor) -> torch.Tensor:
    """mean over queries of KL(p || softmax(scores)); p [B, S, T] (rows sum to 1)."""
    logq = torch.log_softmax(index_scores, dim=-1)
    logq = torch.where(torch.isfinite(logq), logq, torch.zeros_like(logq))
    p = p_attn.float()
    logp = torch.where(p > 0, torch.log(p.clamp_min(1e-30)), torch.zeros_like(p))
    return (p * (logp - logq)).sum(-1).mean()


def multi_layer_kl(attentions: Sequence[torch.Tensor], store: Dict[int, torch.Tensor], pattern: str) -> Dict[int, torch.Tensor]:
    """{Full layer l: L_l}; attentions[i] is layer i's [B, H, S, T] attention (detached)."""
    out = {}
    for l, served in groups(pattern).items():
        out[l] = sum(kl(attentions[j].detach().mean(dim=1), store[l]) for j in served) / len(served)
    return out


def distill(model_path, pattern: str, sequences: Sequence[Sequence[int]], *, steps: int, lr: float = 1e-3,
            batch_size: int = 4, out=None, seed: int = 0, log_every: int = 20, device: str = "cpu") -> dict:
    """Train the retained indexers of `pattern` on `sequences`; save to `out` if given."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="eager",
                                                 experts_implementation="eager").to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    full = [i for i, c in enumerate(pattern) if c == "F"]
    params = []
    for i in full:
        idx = model.model.layers[i].self_attn.indexer
        if idx is None:
            raise ValueError(f"layer {i} is Full in {pattern!r} but has no indexer")
        for p in idx.parameters():
            p.requires_grad_(True)
            params.append(p)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    data = torch.tensor([list(s) for s in sequences])
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train(False)
    for step in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)].to(device)
        with capture(model, dense=True) as store:
            outp = model(batch, output_attentions=True)
            losses = multi_layer_kl(outp.attentions, store, pattern)
        loss = sum(losses.values()) / len(losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            history.append({"step": step, "kl": float(loss)})
    if out is not None:
        out = Path(out)
        model.to("cpu").save_pretrained(out, safe_serialization=True)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
        src_cfg = json.loads((Path(model_path) / "config.json").read_text())
        cfg = json.loads((out / "config.json").read_text())
        for key in ("moe_layer_freq", "scoring_func", "topk_method", "num_nextn_predict_layers",
                    "rope_theta", "rope_scaling", "indexer_rope_interleave", "index_topk_freq",
                    "index_skip_topk_offset"):
            if key in src_cfg:
                cfg[key] = src_cfg[key]
        (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return {"pattern": pattern, "steps": steps, "lr": lr, "history": history}
