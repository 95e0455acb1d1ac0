"""`sglang-indexcache plan` and `make-model` on the tiny models and a GLM-5.2 shape."""

import json

import pytest

from sglang_indexcache import cli


def plan(capsys, *argv):
    rc = cli.main(["plan", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_plan_glm_tiny(models, capsys):
    rc, out, _ = plan(capsys, "--model-path", models["glm-tiny"])
    assert rc == 0
    assert out.startswith("IndexCache schedule: 8 layers, 4 run the indexer (50.0% kept, 4 Shared, 0 Promoted)")
    assert "pattern: FFFSSSFS" in out
    assert "    3      0  SHARED         2  reuses layer 2's top-k" in out


def test_plan_deepseek_tiny_leading_shared(models, capsys):
    rc, out, _ = plan(capsys, "--model-path", models["deepseek-tiny"], "--pattern", "SSFSSF")
    assert rc == 0
    assert "    0      0  PROMOTED       -  configured Shared, layer 0 has no earlier layer to reuse" in out
    assert "pattern: FSFSSF" in out


def test_plan_json(models, capsys):
    rc, out, _ = plan(capsys, "--model-path", models["deepseek-tiny"], "--freq", "3", "--offset", "1", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["pattern"] == "FSSFSS" and d["num_indexers"] == 2
    assert d["indexer_weights_checked"] is True


def test_plan_glm52_shape_pp2(models, capsys):
    rc, out, _ = plan(capsys, "--model-path", models["glm-5.2"], "--pp-size", "2", "--load-format", "dummy")
    assert rc == 0
    assert "78 layers, 22 run the indexer" in out
    assert "stage 0: layers 0-38, 12/39 indexers; stage 1: layers 39-77, 10/39 indexers" in out
    assert "   39      1  PROMOTED" in out


def test_plan_refusals_exit_2_with_the_reason(models, capsys):
    rc, _, err = plan(capsys, "--model-path", models["glm-tiny"], "--pattern", "FSS")
    assert rc == 2 and "has 3 characters but the model has 8 layers" in err
    rc, _, err = plan(capsys, "--model-path", models["glm-tiny"], "--freq", "2", "--offset", "1")
    assert rc == 2 and "no indexer weights" in err and "--index-cache-pattern FFFSSSFS" in err


def test_make_model_needs_exactly_one_kind(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["make-model", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        cli.main(["make-model", str(tmp_path / "x"), "--preset", "glm-tiny", "--shape", "glm-5.2"])


def test_tiny_models_carry_sglang_fields(models):
    for name, rope_interleave in (("glm-tiny", True), ("deepseek-tiny", None)):
        cfg = json.loads(open(f"{models[name]}/config.json").read())
        for key in ("moe_layer_freq", "scoring_func", "topk_method", "num_nextn_predict_layers", "rope_theta"):
            assert key in cfg, (name, key)
        assert cfg.get("indexer_rope_interleave") == rope_interleave
        assert cfg["index_topk"] == 32


def test_tiny_model_is_deterministic(models, tmp_path):
    from sglang_indexcache.tiny_model import make_model

    again = make_model("deepseek-tiny", tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == open(f"{models['deepseek-tiny']}/model.safetensors", "rb").read()
    assert (again / "tokenizer.json").read_text() == open(f"{models['deepseek-tiny']}/tokenizer.json").read()


def test_tokenizer_round_trip(models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["glm-tiny"])
    text = "def index_cache(layer):\n    return layer % 4 == 0"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|user|>\nhi\n<|assistant|>\n"


def test_plan_counts_the_fp8_latent_layout(models, capsys):
    """GLM-5.2 (78 layers, its declared 1-in-4 indexers: 21): 656 B fp8 latent rows (1152 in
    bf16) and 132 B fp8 index-K rows (128 values + one float32 scale)."""
    for dtype, row in (("bf16", 1152), ("fp8_e4m3", 656)):
        rc, out, _ = plan(capsys, "--model-path", models["glm-5.2"], "--load-format", "dummy", "--kv-cache-dtype", dtype)
        assert rc == 0
        full, this = 78 * (row + 132), 78 * row + 21 * 132
        assert f"KV memory per token ({dtype} latent, fp8 index-K): {full} B all-Full, {this} B" in out, out
