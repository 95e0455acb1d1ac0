"""Trained GLM-MoE-DSA models, so the pattern tools have something real to measure.

Two presets, both 12 layers with SGLang's DSA attention dimensions (MLA latent 512 + rope 64,
index key 128) and dense MLPs, trained as DSA is trained:
  1. dense: every indexer selects all keys; LM loss, plus each indexer's KL to its own
     layer's head-averaged attention on detached inputs (DSA's dense warm-up);
  2. sparse: attention restricted to each layer's own top-k; LM loss plus the same KL.

  small  hidden 128, about 5.7M parameters, context 128, index_topk 32 (1/4: not realistic),
         CPython 3.11.7's documentation topics (`tiny_model.CORPUS`, shipped with the package, the same
         on every Python); about 12 minutes on 2 cores.
  long   hidden 256, about 13M parameters, context 2,048, index_topk 128 (1/16 of the context,
         as DeepSeek-V3.2's 2,048 of 32K+ is 1/16 or sparser), the same documentation followed
         by the standard library's own Python sources; a GPU job (minutes on an H200); on 2 CPU
         cores one step of 8 sequences takes minutes.

Text is offline and deterministic for a given Python. The token stream trained on is saved in
the model folder (`corpus.u16`), so every later evaluation (search, study, on any machine) cuts
the same held-out text: the last 10% of the stream, never trained on and never searched on.

    sglang-indexcache train-model --preset small models/glm-small
    sglang-indexcache train-model --preset long --device auto models/glm-long
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import platform
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

CORPUS_FILE = "corpus.u16"

_BASE = dict(
    vocab_size=1024, hidden_size=128, intermediate_size=384, moe_intermediate_size=64,
    num_hidden_layers=12, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=64,
    kv_lora_rank=512, qk_nope_head_dim=32, qk_rope_head_dim=64, v_head_dim=32,
    n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
    first_k_dense_replace=12, routed_scaling_factor=1.0, index_n_heads=4, index_head_dim=128,
    index_topk=32, max_position_embeddings=4096, initializer_range=0.02, rms_norm_eps=1e-6,
    bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False, index_topk_freq=1,
)


@dataclass(frozen=True)
class Preset:
    config: dict
    seq_len: int
    corpus: str  # "docs" or "docs+stdlib"
    dense_steps: int
    sparse_steps: int
    batch_size: int
    lr: float
    kl_weight: float = 0.1


PRESETS = {
    "small": Preset(dict(_BASE), seq_len=128, corpus="docs", dense_steps=300, sparse_steps=300,
                    batch_size=8, lr=3e-3),
    "long": Preset(dict(_BASE, hidden_size=256, intermediate_size=768, q_lora_rank=128, index_topk=128),
                   # batch 2: at 8 the sparse phase's dense-attention target (distill.scores) ran an
                   # H200 out of memory (125 GiB in use, session 7); 2 trained in 217 s there
                   seq_len=2048, corpus="docs+stdlib", dense_steps=300, sparse_steps=900, batch_size=2,
                   lr=2e-3),
}
SMALL_CONFIG = PRESETS["small"].config
SEQ_LEN = PRESETS["small"].seq_len


def _stdlib_sources() -> List[str]:
    """The standard library's Python files (tests, IDLE, demos and site-packages left out),
    in path order, each headed by its path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "ensurepip", "__pycache__"}
    texts = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip & set(rel.parts):
            continue
        texts.append(f"# file: {rel.as_posix()}\n" + path.read_text(encoding="utf-8", errors="replace"))
    return texts


def corpus_text(corpus: str) -> str:
    from sglang_indexcache.tiny_model import _training_text

    if corpus == "docs":
        return _training_text()
    if corpus == "docs+stdlib":
        return "\n".join([_training_text(), *_stdlib_sources()])
    raise ValueError(f"unknown corpus {corpus!r}: docs or docs+stdlib")


def token_stream(model_dir) -> List[int]:
    """The token stream a model was trained on: its saved `corpus.u16`, or (models trained before
    it was saved) the documentation tokenized with the model's tokenizer."""
    saved = Path(model_dir) / CORPUS_FILE
    if saved.is_file():
        stream = array.array("H")
        stream.frombytes(saved.read_bytes())  # little-endian uint16, as written below
        if sys.byteorder == "big":
            stream.byteswap()
        return stream.tolist()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)(corpus_text("docs"))["input_ids"]


def _save_stream(stream: List[int], out: Path) -> str:
    if max(stream) >= 1 << 16:
        raise ValueError("token ids past 65535 do not fit the saved corpus format")
    words = array.array("H", stream)
    if sys.byteorder == "big":
        words.byteswap()
    data = words.tobytes()
    (out / CORPUS_FILE).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def seq_len_of(model_dir) -> int:
    """The context a model was trained at (its training.json; the small preset's before that)."""
    info = Path(model_dir) / "training.json"
    return int(json.loads(info.read_text()).get("seq_len", SEQ_LEN)) if info.is_file() else SEQ_LEN


def split(stream: List[int], seq_len: int = SEQ_LEN):
    """(train, held-out) sequences: the last 10% of the stream is held out."""
    cut = int(len(stream) * 0.9)

    def chunks(ids):
        return [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]

    return chunks(stream[:cut]), chunks(stream[cut:])


def prepare_data(out, preset: str) -> dict:
    """The tokenizer and token stream of `preset` in `out` (`data.json` says which). Kept when
    `out` already holds the preset's, so a folder prepared on one machine (`--prepare-only`)
    trains elsewhere (another Python has another standard library) on the same tokens."""
    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import build_tokenizer

    out = Path(out)
    corpus = PRESETS[preset].corpus
    meta = out / "data.json"
    if meta.is_file() and (out / CORPUS_FILE).is_file():
        data = json.loads(meta.read_text())
        if data.get("corpus") == corpus:
            return data
    out.mkdir(parents=True, exist_ok=True)
    text = corpus_text(corpus)
    build_tokenizer(out, text=text)
    stream = AutoTokenizer.from_pretrained(out)(text)["input_ids"]
    data = {"corpus": corpus, "corpus_tokens": len(stream), "corpus_sha256": _save_stream(stream, out),
            "corpus_python": platform.python_version()}
    meta.write_text(json.dumps(data, indent=2) + "\n")
    return data


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def train_model(out, preset: str = "small", *, dense_steps: Optional[int] = None, sparse_steps: Optional[int] = None,
                batch_size: Optional[int] = None, seq_len: Optional[int] = None, seed: int = 0,
                device: str = "cpu", log=print) -> dict:
    """Train `preset` into `out` (config, weights, tokenizer, corpus, training.json).
    `seq_len` shortens the context (smoke tests); the preset's index_topk stays."""
    import torch
    import transformers

    from sglang_indexcache.tiny_model import _patch_config
    from sglang_indexcache.tools import distill

    p = PRESETS[preset]
    dense_steps = p.dense_steps if dense_steps is None else dense_steps
    sparse_steps = p.sparse_steps if sparse_steps is None else sparse_steps
    batch_size = batch_size or p.batch_size
    seq_len = seq_len or p.seq_len
    device = pick_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare_data(out, preset)
    stream = token_stream(out)
    train, held = split(stream, seq_len)
    torch.manual_seed(seed)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # training only; evaluations run full fp32
    config = transformers.GlmMoeDsaConfig(**p.config)
    model = transformers.GlmMoeDsaForCausalLM._from_config(config, attn_implementation="eager").to(torch.float32)
    model.to(device)
    n_params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=0.01)
    total = dense_steps + sparse_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / max(1, total)))))
    data = torch.tensor(train)
    gen = torch.Generator().manual_seed(seed)
    history = []
    t0 = time.monotonic()
    model.train(False)  # no dropout in this config; eager attention returns probabilities
    for step in range(total):
        dense = step < dense_steps
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)].to(device)
        with distill.capture(model, dense=dense) as store:
            outp = model(batch, labels=batch, output_attentions=True)
            kl = sum(distill.kl(a.detach().mean(dim=1), store[i]) for i, a in enumerate(outp.attentions)) / len(outp.attentions)
        loss = outp.loss + p.kl_weight * kl
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
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    _patch_config(out, "GlmMoeDsaForCausalLM", {"indexer_rope_interleave": True, "index_topk_freq": 1})
    info = {"preset": preset, "params": n_params, **prepared, "device": device,
            "train_sequences": len(train), "held_out_sequences": len(held), "seq_len": seq_len,
            "index_topk": p.config["index_topk"], "dense_steps": dense_steps, "sparse_steps": sparse_steps,
            "batch_size": batch_size, "lr": p.lr, "kl_weight": p.kl_weight, "seed": seed,
            "train_s": round(time.monotonic() - t0, 1), "history": history}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def train_small(out, **kwargs) -> dict:
    return train_model(out, "small", **kwargs)
