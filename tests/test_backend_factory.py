"""The `indexcache` backend factory fails closed: no schedule, or a device it has no path for."""

import types

import pytest

from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

from sglang_indexcache.schedule import build_schedule


def runner(device, schedule=None):
    config = types.SimpleNamespace()
    if schedule is not None:
        config.index_cache_schedule = schedule
    return types.SimpleNamespace(device=device, model_config=config)


def test_factory_without_a_schedule_says_the_plugin_did_not_run():
    with pytest.raises(RuntimeError, match="plugin did not run"):
        ATTENTION_BACKENDS["indexcache"](runner("cuda"))


def test_factory_refuses_devices_it_has_no_path_for():
    with pytest.raises(NotImplementedError, match="runs on CUDA and CPU, not on 'xpu'"):
        ATTENTION_BACKENDS["indexcache"](runner("xpu", build_schedule(4, {})))
