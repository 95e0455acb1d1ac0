"""The magnitude of a layer's indexer scores under SGLang's dummy weights (CPU, no SGLang).

SGLang's `--load-format dummy` sets every float parameter uniform in [-1e-3, 1e-3]
(`model_loader/weight_utils.initialize_dummy_weights`). This builds layer 0 of the flash-12
shape in transformers' GlmMoeDsa, initialises it that way, runs 4,096 random tokens and reads
the indexer's scores (the tensor its top-k is taken of):

    .venv/bin/python benchmarks/results/h200-2026-12-01-session10/dummy_scores.py
"""
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig
from transformers.models.glm_moe_dsa import modeling_glm_moe_dsa as m

from sglang_indexcache.tiny_model import make_shape

folder = Path(tempfile.mkdtemp())
make_shape("glm-4.7-flash", folder, num_layers=1, num_heads=32)
cfg = AutoConfig.from_pretrained(folder)
model = m.GlmMoeDsaForCausalLM(cfg).eval()
with torch.no_grad():
    for p in model.state_dict().values():
        if p.is_floating_point():
            p.uniform_(-1e-3, 1e-3, generator=torch.Generator().manual_seed(1234))
captured = []
topk = torch.Tensor.topk


def spy(self, k, dim=-1, *a, **kw):  # the indexer's top-k over its [B, S, L] scores
    if self.dim() == 3 and not captured:
        captured.append(self.detach().clone())
    return topk(self, k, dim, *a, **kw)


torch.Tensor.topk = spy
with torch.no_grad():
    model(torch.randint(1000, cfg.vocab_size - 1000, (1, 4096)))
torch.Tensor.topk = topk
s = captured[0][0]
fin = s[torch.isfinite(s)]
print(f"scores: {fin.numel()} finite, |max| {fin.abs().max().item():.3g}, median |score| {fin.abs().median().item():.3g}")
print(f"zero in fp16: {(fin.half() == 0).float().mean().item():.4f} of them")
print(f"distinct float32 values in the last row: {torch.unique(s[-1][torch.isfinite(s[-1])]).numel()} of {int(torch.isfinite(s[-1]).sum())}")
