"""Patch 0003: the --index-cache-* flags (and the indexcache backend) are refused when the
plugin is not active, instead of parsing and doing nothing."""

import types

import pytest

import sglang_indexcache.integration.plugin as plugin


def args(**kw):
    base = dict(index_cache_pattern=None, index_cache_freq=None, index_cache_offset=None,
                index_cache_pp_handoff="recompute", attention_backend=None,
                prefill_attention_backend=None, decode_attention_backend=None)
    return types.SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("kw, named", [
    (dict(index_cache_pattern="FSSS"), "--index-cache-pattern"),
    (dict(index_cache_freq=4, index_cache_offset=1), "--index-cache-freq, --index-cache-offset"),
    (dict(index_cache_pp_handoff="transfer"), "--index-cache-pp-handoff"),
    (dict(attention_backend="indexcache"), "--attention-backend indexcache"),
    (dict(decode_attention_backend="indexcache"), "--decode-attention-backend indexcache"),
])
def test_flags_without_an_active_plugin_are_refused(monkeypatch, kw, named):
    from sglang.srt.arg_groups.pipeline import check_index_cache_plugin  # exists only with the patch

    monkeypatch.setattr(plugin, "_registered", False)
    with pytest.raises(ValueError, match="plugin, which implements these, is not active") as e:
        check_index_cache_plugin(args(**kw))
    assert str(e.value).startswith(named)
    monkeypatch.setattr(plugin, "_registered", True)
    check_index_cache_plugin(args(**kw))  # active: nothing to refuse


def test_stock_launch_lines_pass_without_the_plugin(monkeypatch):
    from sglang.srt.arg_groups.pipeline import check_index_cache_plugin

    monkeypatch.setattr(plugin, "_registered", False)
    check_index_cache_plugin(args(attention_backend="dsa"))
    check_index_cache_plugin(args())


def test_the_plugin_reports_itself_registered_after_loading():
    assert plugin.is_registered()  # conftest loads SGLang's plugins, ours among them


@pytest.mark.engine
@pytest.mark.parametrize("launch, expected", [
    (["--attention-backend", "dsa", "--index-cache-pattern", "FSSFSS"],
     "--index-cache-pattern: the sglang_indexcache plugin, which implements these, is not active"),
    (["--attention-backend", "indexcache"], "invalid choice: 'indexcache'"),
])
def test_a_real_launch_with_the_plugin_left_out_refuses(models, tmp_path, launch, expected):
    """End to end: `SGLANG_PLUGINS` naming only another plugin leaves ours out; the launcher
    refuses the flags at startup, before any weight loads, instead of serving without sharing."""
    import subprocess
    import sys

    from sglang_indexcache.server import cpu_env

    env = cpu_env() | {"SGLANG_PLUGINS": "some-other-plugin"}
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", models["deepseek-tiny"], "--device", "cpu",
           "--port", "1", *launch]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-2000:]
    assert expected in out, out[-2000:]
    assert "Load weight" not in out
