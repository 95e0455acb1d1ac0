"""Tensor and pipeline parallelism on SGLang's CPU engine: no PyNccl there.

SGLang 0.5.23 builds every process group with `use_pynccl` on unless the platform is NPU,
XPU or an out-of-tree platform without PyNccl; its CPU engine (`SGLANG_USE_CPU_ENGINE=1`,
`--device cpu`) is none of those, so `--tp-size 2` on CPU stops at start-up in
`PyNcclCommunicator.__init__`: `ValueError: Expected a cuda device, but got: cpu`. The CPU
groups talk through gloo (their `cpu_group`) and SGLang's CPU collectives either way. This
AROUND hook on `parallel_state.init_model_parallel_group` asks for no PyNccl when the
engine runs on CPU and the caller left the choice to SGLang; on CUDA it changes nothing.
Remove it once SGLang's CPU engine turns PyNccl off itself.
"""

from __future__ import annotations

TARGET = "sglang.srt.distributed.parallel_state.init_model_parallel_group"


def _on_cpu_engine() -> bool:
    from sglang.srt.utils import is_cpu

    return bool(is_cpu())


def around_init_model_parallel_group(original, *args, **kwargs):
    # init_model_parallel_group(group_ranks, local_rank, backend, use_pynccl=None, ...)
    if len(args) < 4 and kwargs.get("use_pynccl") is None and _on_cpu_engine():
        kwargs["use_pynccl"] = False
    return original(*args, **kwargs)
