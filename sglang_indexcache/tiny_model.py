"""Small DSA checkpoints made with transformers, and config-only folders at real shapes.

Presets (random weights, deterministic seed, float32 safetensors, a local BPE tokenizer):
  glm-tiny       GlmMoeDsaForCausalLM, 8 layers, GLM-5.2's schedule (freq 4, offset 3):
                 no indexer weights on its Shared layers, like the real checkpoint.
  glm-tiny-full  the same architecture with an indexer in every layer (all-Full; any pattern).
  deepseek-tiny  DeepseekV32ForCausalLM, 6 layers, indexer weights on every layer.
Shapes (config.json + tokenizer only, for `--load-format dummy` GPU runs):
  glm-4.7-flash  GLM-4.7-Flash's shape with DSA (47 layers by default).
  glm-5.2        GLM-5.2's attention/MoE shape (78 layers, freq 4, offset 3).

Example:
    >>> from sglang_indexcache.tiny_model import make_model      # doctest: +SKIP
    >>> make_model("glm-tiny", "models/glm-tiny")                 # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

SEED = 1234
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Fields SGLang's DeepSeek/GLM model code reads that transformers' configs leave out.
_SGLANG_FIELDS = {
    "moe_layer_freq": 1,
    "scoring_func": "sigmoid",
    "topk_method": "noaux_tc",
    "num_nextn_predict_layers": 0,
    "rope_theta": 10000.0,
    "rope_scaling": None,
}

# Tiny in width and depth, but with the attention dimensions SGLang's DSA code
# and kernels require: the MLA latent is 512 + 64 (FlashMLA's sparse kernel reads
# 576-wide rows) and the index key is 128 wide (the DSA KV pool asserts it).
_TINY_COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_attention_heads=4,
    num_key_value_heads=4,
    q_lora_rank=32,
    kv_lora_rank=512,
    qk_nope_head_dim=16,
    qk_rope_head_dim=64,
    v_head_dim=16,
    n_routed_experts=4,
    n_shared_experts=1,
    num_experts_per_tok=2,
    n_group=1,
    topk_group=1,
    first_k_dense_replace=1,
    routed_scaling_factor=1.0,
    index_n_heads=32,
    index_head_dim=128,
    index_topk=32,
    max_position_embeddings=4096,
    initializer_range=0.6,
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=0,
    tie_word_embeddings=False,
)

PRESETS = {
    "glm-tiny": dict(
        arch="GlmMoeDsaForCausalLM",
        config=dict(_TINY_COMMON, num_hidden_layers=8, index_topk_freq=4, index_skip_topk_offset=3),
        extra={"indexer_rope_interleave": True, "index_topk_freq": 4, "index_skip_topk_offset": 3},
    ),
    # The same GLM layers with an indexer in every layer: all-Full, and any pattern.
    "glm-tiny-full": dict(
        arch="GlmMoeDsaForCausalLM",
        config=dict(_TINY_COMMON, num_hidden_layers=8, index_topk_freq=1),
        extra={"indexer_rope_interleave": True, "index_topk_freq": 1},
    ),
    "deepseek-tiny": dict(
        arch="DeepseekV32ForCausalLM",
        config=dict(_TINY_COMMON, num_hidden_layers=6),
        extra={},
    ),
}

_GLM_FLASH = dict(
    vocab_size=154880, hidden_size=2048, intermediate_size=10240, moe_intermediate_size=1536,
    num_hidden_layers=47, num_attention_heads=20, num_key_value_heads=20, q_lora_rank=768,
    kv_lora_rank=512, qk_nope_head_dim=192, qk_rope_head_dim=64, v_head_dim=256,
    n_routed_experts=64, n_shared_experts=1, num_experts_per_tok=4, n_group=1, topk_group=1,
    first_k_dense_replace=1, routed_scaling_factor=1.8, index_n_heads=32, index_head_dim=128,
    index_topk=2048, max_position_embeddings=202752, rms_norm_eps=1e-5,
)
_GLM_52 = dict(
    vocab_size=154880, hidden_size=6144, intermediate_size=12288, moe_intermediate_size=2048,
    num_hidden_layers=78, num_attention_heads=64, num_key_value_heads=64, q_lora_rank=2048,
    kv_lora_rank=512, qk_nope_head_dim=192, qk_rope_head_dim=64, v_head_dim=256,
    n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, n_group=1, topk_group=1,
    first_k_dense_replace=3, routed_scaling_factor=2.5, index_n_heads=32, index_head_dim=128,
    index_topk=2048, max_position_embeddings=202752, rms_norm_eps=1e-5,
    index_topk_freq=4, index_skip_topk_offset=3,
)
SHAPES = {"glm-4.7-flash": _GLM_FLASH, "glm-5.2": _GLM_52}


# What the BPE learns its merges from: CPython 3.11.7's `pydoc_data.topics` (its documentation's
# topics, PSF License), joined in key order and shipped with the package. Until 2026-12-02 it was
# read from the running interpreter, whose topics differ between Python versions: the tokenizer,
# and so every trace made with it, then differed between this project's machines (3.11) and the
# GPU host (3.12) for the same seed. The file is that text, so tokenizers built here are unchanged.
CORPUS = Path(__file__).resolve().parent / "data" / "bpe_corpus.txt.xz"


def _training_text() -> str:
    import lzma

    return lzma.decompress(CORPUS.read_bytes()).decode()


def build_tokenizer(out: Path, cover: Optional[int] = None, text: Optional[str] = None) -> None:
    """Train a byte-level BPE tokenizer (VOCAB_SIZE tokens) and save it HF-style in `out`.

    `cover`: the model's vocabulary when larger (the real shapes). Ids past the BPE's are
    plain tokens `<tN>`, so every id a dummy-weight model emits decodes to text that
    encodes back to the same id: chat replies keep their token count when a multi-turn
    client sends them back, and the server streams a chunk for every token (TTFT and ITL
    measured per token, not per printable token). `text`: what the BPE learns its merges
    from (default: `CORPUS`, the same on every Python)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((text if text is not None else _training_text()).splitlines(), trainer=trainer)
    if cover is not None and cover > tok.get_vocab_size():
        tok = _padded(tok, cover)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    fast.save_pretrained(out)


# A padding token `<tN>` is one pre-token, and the text between two is split as ByteLevel's own
# regex splits it (a run of whitespace or punctuation ends where a `<tN>` begins, as it ends at
# the end of a text). BPE then takes a pre-token found whole in the vocabulary as it is
# (`ignore_merges`): on the BPE's own text that gave the unpadded tokenizer's ids in every case
# tried (the traces, random text: tests/test_bench_agentic.py).
PAD_TOKEN = r"<t[0-9]+>"
_PADDED_SPLIT = (
    PAD_TOKEN + r"|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?(?:(?!" + PAD_TOKEN + r")[^\s\p{L}\p{N}])+"
    r"|\s+(?=" + PAD_TOKEN + r")|\s+(?!\S)|\s+"
)


def _padded(tok, cover: int):
    """`tok` with the words `<tN>` (N from its vocabulary's size to `cover`) in its BPE vocabulary.

    Not added tokens: with ~150K of them, SGLang's parallel prompt encoder (the chat door's
    default, for real checkpoints with a few hundred) splits a prompt on a regex alternation of
    every added token, 6.2 s for a 129K-token agentic turn, so sessions 11 to 17's benchmarks
    turned it off (`bench/common.tokenizer_env`) and their chat door encoded serially. As words
    of the vocabulary (found whole: `ignore_merges`), the encoder plans this tokenizer as a real
    one (split at the chat template's special tokens, encoded in parallel)."""
    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<t{i}>": i for i in range(len(vocab), cover)})
    spec["model"]["ignore_merges"] = True
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _PADDED_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ]}
    return Tokenizer.from_str(json.dumps(spec))


def _patch_config(out: Path, arch: str, extra: dict) -> None:
    path = out / "config.json"
    cfg = json.loads(path.read_text())
    cfg["architectures"] = [arch]
    for key, value in {**_SGLANG_FIELDS, **extra}.items():
        cfg.setdefault(key, value)
    cfg.update(extra)
    if "index_topk_freq" in extra:
        # Real GLM-5.2 configs declare the schedule by freq/offset only; transformers derives
        # indexer_types from them on load, so keep that the single declaration here too.
        cfg.pop("indexer_types", None)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def make_model(preset: str, out: str | Path) -> Path:
    """Write a random-weight tiny DSA checkpoint (float32 safetensors + tokenizer)."""
    import torch
    import transformers

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_cls = {
        "GlmMoeDsaForCausalLM": transformers.GlmMoeDsaConfig,
        "DeepseekV32ForCausalLM": transformers.DeepseekV32Config,
    }[spec["arch"]]
    model_cls = getattr(transformers, spec["arch"])
    config = config_cls(**spec["config"])
    torch.manual_seed(SEED)
    model = model_cls(config).to(torch.float32).eval()
    model.save_pretrained(out, safe_serialization=True)
    _patch_config(out, spec["arch"], spec["extra"])
    build_tokenizer(out)
    return out


def make_shape(
    shape: str,
    out: str | Path,
    *,
    num_layers: Optional[int] = None,
    num_heads: Optional[int] = None,
    overrides: Optional[dict] = None,
) -> Path:
    """Write a config-only GlmMoeDsa folder at a real shape (for `--load-format dummy`).

    `overrides` replaces config values (e.g. fewer routed experts for a test that only
    needs the real attention dimensions)."""
    import transformers

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPES)}")
    values = dict(SHAPES[shape], **(overrides or {}))
    if num_layers is not None:
        values["num_hidden_layers"] = num_layers
    if num_heads is not None:
        values["num_attention_heads"] = values["num_key_value_heads"] = num_heads
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    transformers.GlmMoeDsaConfig(**values).save_pretrained(out)
    sharing = {k: values[k] for k in ("index_topk_freq", "index_skip_topk_offset") if k in values}
    _patch_config(out, "GlmMoeDsaForCausalLM", {"indexer_rope_interleave": True, "torch_dtype": "bfloat16", **sharing})
    if not sharing:  # nothing declared: every layer Full unless flags say otherwise
        cfg = json.loads((out / "config.json").read_text())
        cfg.pop("indexer_types", None)
        (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    build_tokenizer(out, cover=values["vocab_size"])
    return out
