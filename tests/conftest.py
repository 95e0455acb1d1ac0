import json
import os
import signal

import pytest

import torch

HAS_CUDA = torch.cuda.is_available()

# CPU-only machines: keep SGLang off CUDA paths during argument resolution.
if not HAS_CUDA:
    os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")


def _interrupt_on_sigterm(signum, frame):
    # `timeout` and CI runners stop pytest with SIGTERM; as an interrupt, pytest still tears
    # down its fixtures, so the servers they started (own sessions) do not outlive the run and
    # hold the GPU, as they did once on the H200.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip cleanly (with the reason) where there is no CUDA GPU."""
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def sglang_plugins():
    """Load SGLang's plugins (ours among them) once, as every SGLang process does."""
    from sglang.srt.plugins import load_plugins

    load_plugins()


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The tiny presets and config-only shapes, generated once per test session."""
    from sglang_indexcache.tiny_model import make_model, make_shape

    root = tmp_path_factory.mktemp("models")
    out = {p: str(make_model(p, root / p)) for p in ("glm-tiny", "glm-tiny-full", "deepseek-tiny")}
    out["glm-5.2"] = str(make_shape("glm-5.2", root / "glm-5.2"))
    llama = root / "llama-tiny"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4,
        "num_hidden_layers": 2, "vocab_size": 1024, "max_position_embeddings": 512,
    }))
    out["llama-tiny"] = str(llama)
    return out
