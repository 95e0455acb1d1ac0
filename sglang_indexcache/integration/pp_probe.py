"""Pipeline measurements for the PP benchmark (`bench/pp.py`), off unless asked for.

With `SGLANG_INDEXCACHE_PP_PROBE=PATH` in a server's environment, every scheduler process of
every backend (SGLang's `dsa` too: the plugin loads in all of them) keeps these counters and a
watcher thread writes them to `PATH.tp{t}-pp{p}` whenever they change (within 50 ms):

* `proxy_bytes`: bytes of each tensor SGLang hands to `send_tensor_dict` in a message of kind
  `proxy` (what crosses a stage boundary: hidden states, residual, and the DSA top-k where the
  next stage starts on a Shared layer), as sent: the slice each rank sends when the message is
  all-gathered on the other side; `proxy_messages`: how many such messages;
* `forward_ms_total` / `forward_count`: GPU time of this stage's model-runner forwards (CUDA
  events recorded around each, read by a watcher thread once complete, so nothing
  synchronises; on CPU the wall time), `forwards`: forwards launched;
* `peak_bytes`: `torch.cuda.max_memory_allocated()` of this process (CUDA only).

Measured where SGLang sends and runs, not computed from shapes: the benchmark's boundary
bytes and stage times per request are differences of these counters around one request.
"""

from __future__ import annotations

import json
import os
import threading
import time

ENV = "SGLANG_INDEXCACHE_PP_PROBE"
SEND_TARGET = "sglang.srt.distributed.parallel_state.GroupCoordinator.send_tensor_dict"
FORWARD_TARGET = "sglang.srt.model_executor.model_runner.ModelRunner.forward"

_state = {"proxy_messages": 0, "proxy_bytes": {}, "forwards": 0, "forward_count": 0, "forward_ms_total": 0.0,
          "peak_bytes": None}
_pending: list = []  # (start event, end event) of forwards not yet complete
_lock = threading.Lock()
_where: dict = {"version": 0}  # the state's version, bumped by every change; the file's path


def _path() -> str:
    if "path" not in _where:
        from sglang.srt.distributed.parallel_state import get_pp_group, get_tensor_model_parallel_rank

        _where["path"] = f"{os.environ[ENV]}.tp{get_tensor_model_parallel_rank()}-pp{get_pp_group().rank_in_group}"
    return _where["path"]


def _write() -> None:
    path = _where.get("path")
    if path is None:
        return
    with _lock:
        text = json.dumps(_state)
        _where["written"] = _where["version"]
    with open(f"{path}.tmp", "w") as fh:
        fh.write(text)
    os.replace(f"{path}.tmp", path)


def _drain() -> None:
    with _lock:
        while _pending and _pending[0][1].query():
            s, e = _pending.pop(0)
            _state["forward_ms_total"] += s.elapsed_time(e)
            _state["forward_count"] += 1
            _where["version"] += 1


def _watch(device) -> None:
    """The only writer, so the serving thread does no file work."""
    if device is not None:
        import torch

        torch.cuda.set_device(device)
    while True:
        time.sleep(0.05)
        if device is not None:
            _drain()
        if _where["version"] != _where.get("written"):
            _write()


def around_send_tensor_dict(original, group, tensor_dict, *args, **kwargs):
    if isinstance(tensor_dict, dict) and tensor_dict.get("__msg_type__") == "proxy":
        gather = kwargs.get("all_gather_group", args[1] if len(args) > 1 else None)
        parts = 1 if gather is None else gather.world_size
        with _lock:
            sizes = _state["proxy_bytes"]
            for key, value in tensor_dict.items():
                if hasattr(value, "element_size") and value.numel():
                    n = value.numel() * value.element_size()
                    sizes[key] = sizes.get(key, 0) + (n // parts if value.numel() % parts == 0 else n)
            _state["proxy_messages"] += 1
            _where["version"] += 1
    return original(group, tensor_dict, *args, **kwargs)


def around_forward(original, runner, *args, **kwargs):
    import torch

    _path()
    cuda = str(getattr(runner, "device", "cpu")).startswith("cuda")
    if "watcher" not in _where:
        device = torch.cuda.current_device() if cuda else None
        _where["watcher"] = threading.Thread(target=_watch, args=(device,), daemon=True, name="indexcache-pp-probe")
        _where["watcher"].start()
    if cuda and torch.cuda.is_current_stream_capturing():  # a graph capture records no events
        return original(runner, *args, **kwargs)
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = original(runner, *args, **kwargs)
        end.record()
        with _lock:
            _pending.append((start, end))
            _state["forwards"] += 1
            _state["peak_bytes"] = torch.cuda.max_memory_allocated()
            _where["version"] += 1
        return out
    t0 = time.perf_counter()
    out = original(runner, *args, **kwargs)
    with _lock:
        _state["forward_ms_total"] += (time.perf_counter() - t0) * 1e3
        _state["forward_count"] += 1
        _state["forwards"] += 1
        _where["version"] += 1
    return out


def register(registry, hook_type) -> None:
    """At plugin load, in every process; only where the variable is set."""
    if not os.environ.get(ENV):
        return
    registry.register(SEND_TARGET, around_send_tensor_dict, hook_type.AROUND)
    registry.register(FORWARD_TARGET, around_forward, hook_type.AROUND)
