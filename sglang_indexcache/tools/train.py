"""A small trained GLM-MoE-DSA model, so the pattern tools have something real to measure.

12 layers, hidden 128, MLA with SGLang's DSA dimensions (latent 512 + rope 64, index key
128), dense MLPs, about 4M parameters, trained on CPython's bundled documentation
(`pydoc_data.topics`, offline, deterministic) as DSA is trained:
  1. dense: every indexer selects all keys; LM loss, plus each indexer's KL to its own
     layer's head-averaged attention on detached inputs (DSA's dense warm-up);
  2. sparse: attention restricted to each layer's own top-k (index_topk 32 of 128
     tokens); LM loss plus the same indexer KL.
The last 10% of the token stream is held out (never trained on, never used by search).

    sglang-indexcache train-small models/glm-small          # about 12 minutes on 2 cores
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import List

import torch

SEQ_LEN = 128
SMALL_CONFIG = dict(
    vocab_size=1024, hidden_size=128, intermediate_size=384, moe_intermediate_size=64,
    num_hidden_layers=12, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=64,
    kv_lora_rank=512, qk_nope_head_dim=32, qk_rope_head_dim=64, v_head_dim=32,
    n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
    first_k_dense_replace=12, routed_scaling_factor=1.0, index_n_heads=4, index_head_dim=128,
    index_topk=32, max_position_embeddings=4096, initializer_range=0.02, rms_norm_eps=1e-6,
    bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False, index_topk_freq=1,
)


def token_stream(tokenizer_dir) -> List[int]:
    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import _training_text

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return tok(_training_text())["input_ids"]


def split(stream: List[int], seq_len: int = SEQ_LEN):
    """(train, held-out) sequences: the last 10% of the stream is held out."""
    cut = int(len(stream) * 0.9)
    def chunks(ids):
        return [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    return chunks(stream[:cut]), chunks(stream[cut:])


def train_small(out, *, dense_steps: int = 300, sparse_steps: int = 300, batch_size: int = 8,
                lr: float = 3e-3, kl_weight: float = 0.1, seed: int = 0, log=print) -> dict:
    import transformers

    from sglang_indexcache.tiny_model import _patch_config, build_tokenizer
    from sglang_indexcache.tools import distill

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    train, held = split(token_stream(out))
    torch.manual_seed(seed)
    config = transformers.GlmMoeDsaConfig(**SMALL_CONFIG)
    model = transformers.GlmMoeDsaForCausalLM._from_config(config, attn_implementation="eager").to(torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total = dense_steps + sparse_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / total))))
    data = torch.tensor(train)
    gen = torch.Generator().manual_seed(seed)
    history = []
    t0 = time.monotonic()
    model.train(False)  # no dropout in this config; eager attention returns probabilities
    for step in range(total):
        dense = step < dense_steps
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)]
        with distill.capture(model, dense=dense) as store:
            outp = model(batch, labels=batch, output_attentions=True)
            kl = sum(distill.kl(a.detach().mean(dim=1), store[i]) for i, a in enumerate(outp.attentions)) / len(outp.attentions)
        loss = outp.loss + kl_weight * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == total - 1:
            rec = {"step": step, "phase": "dense" if dense else "sparse", "lm": float(outp.loss), "kl": float(kl),
                   "elapsed_s": round(time.monotonic() - t0, 1)}
            history.append(rec)
            log(json.dumps(rec))
    model.save_pretrained(out, safe_serialization=True)
    _patch_config(out, "GlmMoeDsaForCausalLM", {"indexer_rope_interleave": True, "index_topk_freq": 1})
    info = {"params": n_params, "train_sequences": len(train), "held_out_sequences": len(held), "seq_len": SEQ_LEN,
            "dense_steps": dense_steps, "sparse_steps": sparse_steps, "batch_size": batch_size, "lr": lr,
            "kl_weight": kl_weight, "seed": seed, "history": history}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
