"""The launch flags through SGLang's real argument parser and ServerArgs."""

import argparse
from importlib.metadata import entry_points

import pytest

from sglang.srt.server_args import ServerArgs, prepare_server_args

from sglang_indexcache.schedule import ScheduleError


def parse(argv):
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    return parser.parse_args(argv)


def test_plugin_entry_point_is_installed():
    eps = {ep.name: ep.value for ep in entry_points(group="sglang.srt.plugins")}
    assert eps.get("indexcache") == "sglang_indexcache.integration.plugin:register"


def test_flags_parse():
    ns = parse(["--model-path", "m", "--attention-backend", "indexcache", "--index-cache-pattern", "FSSS",
                "--index-cache-pp-handoff", "transfer"])
    assert ns.attention_backend == "indexcache"
    assert ns.index_cache_pattern == "FSSS"
    assert ns.index_cache_pp_handoff == "transfer"
    ns = parse(["--model-path", "m", "--index-cache-freq", "4", "--index-cache-offset", "3"])
    assert (ns.index_cache_freq, ns.index_cache_offset) == (4, 3)
    ns = parse(["--model-path", "m"])
    assert (ns.index_cache_pattern, ns.index_cache_freq, ns.index_cache_offset, ns.index_cache_pp_handoff) == (
        None, None, None, "recompute")


@pytest.mark.parametrize("argv", [["--index-cache-pp-handoff", "send"], ["--index-cache-freq", "four"],
                                  ["--attention-backend", "indexcash"]])
def test_bad_flag_values_exit(argv):
    with pytest.raises(SystemExit):
        parse(["--model-path", "m", *argv])


def test_server_args_carry_the_flags(models):
    sa = prepare_server_args(["--model-path", models["deepseek-tiny"], "--device", "cpu",
                              "--attention-backend", "indexcache", "--index-cache-pattern", "FSFSFS"])
    assert sa.index_cache_pattern == "FSFSFS"
    assert sa.attention_backend == "indexcache"


def test_invalid_pattern_fails_when_the_model_config_is_built(models):
    # SGLang builds its ModelConfig (argument resolution, then each scheduler) before any
    # weight loads; our hook validates the schedule there.
    from sglang.srt.configs.model_config import ModelConfig

    sa = prepare_server_args(["--model-path", models["deepseek-tiny"], "--device", "cpu",
                              "--attention-backend", "indexcache", "--index-cache-pattern", "FSS"])
    with pytest.raises(ScheduleError, match="has 3 characters but the model has 6 layers"):
        ModelConfig.from_server_args(sa)


def test_plugin_registered_everything():
    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS
    from sglang.srt.plugins.hook_registry import HookRegistry

    assert "indexcache" in ATTENTION_BACKEND_CHOICES
    assert "indexcache" in ATTENTION_BACKENDS
    assert "sglang.srt.configs.model_config.ModelConfig.from_server_args" in HookRegistry._patched
    assert hasattr(ModelConfig.__dict__["from_server_args"].__func__, "__wrapped__")


def test_launch_server_help_lists_flags_and_backend():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--help"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for flag in ("--index-cache-pattern", "--index-cache-freq", "--index-cache-offset",
                 "--index-cache-pp-handoff {recompute,transfer,align,auto}", "--index-cache-switchable"):
        assert flag in out.stdout
    assert ",indexcache}" in out.stdout  # a choice of --attention-backend
