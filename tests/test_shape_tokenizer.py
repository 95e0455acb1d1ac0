"""The shape tokenizers (`tiny_model.build_tokenizer`, `bench/common.tokenizer_env`) on CPU: every id a
dummy model at a real shape emits round-trips through text, and SGLang's chat door encodes long
prompts with them as it does for a real checkpoint's tokenizer."""

from __future__ import annotations

import json

from sglang_indexcache.bench import common


def test_shape_tokenizer_round_trips_every_model_id(tmp_path):
    """A dummy model at a real shape emits ids past the 1024-token BPE: each must decode to
    text that encodes back to itself, or replies sent back by bench_serving change length;
    text without them gets the unpadded BPE's ids (the traces are made of such text)."""
    import random

    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import VOCAB_SIZE, build_tokenizer

    build_tokenizer(tmp_path / "padded", cover=VOCAB_SIZE + 512)
    build_tokenizer(tmp_path / "bpe")
    tok, bpe = (AutoTokenizer.from_pretrained(tmp_path / d) for d in ("padded", "bpe"))
    assert len(tok) == VOCAB_SIZE + 512 and len(bpe) == VOCAB_SIZE
    ids = [VOCAB_SIZE + 511, 300, VOCAB_SIZE, 77, VOCAB_SIZE + 17]
    assert tok(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids
    rng = random.Random(0)
    for n in range(200):  # BPE text, whitespace and punctuation runs next to <tN>: alike either way
        text = bpe.decode([rng.randrange(4, VOCAB_SIZE) for _ in range(60)])
        assert tok(text, add_special_tokens=False)["input_ids"] == bpe(text, add_special_tokens=False)["input_ids"]
        mixed = [rng.choice((rng.randrange(4, VOCAB_SIZE), rng.randrange(VOCAB_SIZE, VOCAB_SIZE + 512)))
                 for _ in range(60)]
        back = tok(tok.decode(mixed), add_special_tokens=False)["input_ids"]
        pads = [i for i in mixed if i >= VOCAB_SIZE]
        assert [i for i in back if i >= VOCAB_SIZE] == pads  # the BPE part may merge anew, <tN> never
    for s in (" ", "  ", "\n", "..", " <", "x"):  # the text before a <tN> splits as at a text's end
        want = bpe(s, add_special_tokens=False)["input_ids"]
        assert tok(s + f"<t{VOCAB_SIZE}>", add_special_tokens=False)["input_ids"] == [*want, VOCAB_SIZE], s


def test_shape_tokenizer_takes_sglangs_parallel_prompt_encoder(tmp_path):
    """SGLang's chat door encodes a long prompt in parallel for a real checkpoint's tokenizer;
    it must plan a shape's padded tokenizer the same way (not fall back to a serial encode), and
    give the serial encode's ids. Earlier shape tokenizers padded with ~150K added tokens made
    it split on an alternation of all of them (6.2 s for a 129K-token turn)."""
    import random

    from sglang.srt.entrypoints.openai import parallel_prompt_encode as ppe
    from transformers import AutoTokenizer

    from sglang_indexcache.tiny_model import SPECIAL_TOKENS, VOCAB_SIZE, build_tokenizer

    build_tokenizer(tmp_path, cover=VOCAB_SIZE + 4096)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.model_max_length = 1 << 30
    rng = random.Random(1)
    messages = [{"role": "system", "content": "Tools: bash, read_file."}]
    for turn in range(12):
        messages.append({"role": "user", "content": tok.decode([rng.randrange(4, VOCAB_SIZE) for _ in range(900)])})
        messages.append({"role": "assistant", "content": tok.decode([rng.randrange(4, VOCAB_SIZE + 4096) for _ in range(200)])})
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert len(text) > ppe.envs.SGLANG_PARALLEL_PROMPT_ENCODE_MIN_CHARS.get()
    plan = ppe._build_plan(tok)
    assert plan is not None
    # the alternation it scans a prompt with: the template's special tokens, not one per <tN>
    assert plan[2].pattern == ppe._alternation(SPECIAL_TOKENS).pattern
    assert len(ppe.split_prompt(text, plan[2], plan[3], plan[4])) > 2  # cut at the template's tokens
    assert ppe.parallel_prompt_encode(tok, text, {"add_special_tokens": False}) == tok.encode(text, add_special_tokens=False)
    assert common.tokenizer_env(tmp_path) == {}


def test_padded_tokenizer_turns_sglangs_parallel_prompt_encoder_off(tmp_path):
    """A tokenizer with ~150K added tokens (a shape folder made before session 17; no real
    checkpoint's) makes SGLang's parallel prompt encoder slow (bench/common.tokenizer_env); the
    benchmark turns it off for such a tokenizer only."""
    padded, real = tmp_path / "padded", tmp_path / "real"
    for folder, n in ((padded, common.PADDED_TOKENIZER_ADDED + 1), (real, 300)):
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps(
            {"added_tokens": [{"id": i, "content": f"<t{i}>"} for i in range(n)]}))
    assert common.tokenizer_env(padded) == {"SGLANG_PARALLEL_PROMPT_ENCODE": "0"}
    assert common.tokenizer_env(real) == {}
    assert common.tokenizer_env(tmp_path) == {}  # no tokenizer.json: SGLang's default


def test_the_tokenizer_corpus_does_not_depend_on_the_python_running(monkeypatch):
    """The shape tokenizers learn their merges from a text shipped with the package, not from the
    interpreter's `pydoc_data` (which differs between Python 3.11 and 3.12: the same seed gave
    different traces here and on the GPU host until session 20). The digest is CPython 3.11.7's
    topics text, what every tokenizer made on this project's machines learned from."""
    import hashlib
    import sys
    import types

    from sglang_indexcache import tiny_model

    fake = types.ModuleType("pydoc_data.topics")
    fake.topics = {"other": "another interpreter's documentation"}
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", fake)
    text = tiny_model._training_text()
    assert hashlib.sha256(text.encode()).hexdigest() == "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"
