"""What every workload of the benchmark shares: the configurations compared, the model
shapes, the GPU's memory split, and the record of versions and hardware."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

BASE_ARGS = [
    "--load-format", "dummy",
    "--dtype", "bfloat16",
    "--dsa-prefill-backend", "flashmla_sparse",
    "--dsa-decode-backend", "flashmla_sparse",
]
# --device cpu: a smoke run of the decode path (configs b and c; upstream dsa has no CPU path)
CPU_ARGS = ["--dtype", "float32", "--sleep-on-idle"]
# MTP: EAGLE over the checkpoint's NextN layer (agentic and decode `--mtp`)
MTP = ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", "2", "--speculative-eagle-topk", "1",
       "--speculative-num-draft-tokens", "3"]
# Several GPUs of one host (the device tool's KINDS.md): no NVLink multicast, and TP servers
# without the custom all-reduce and the FlashInfer all-reduce fusion (TP 2 stalls at startup
# on the H200 pair otherwise: DESIGN.md's 2-GPU table)
MULTI_GPU_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
TP_ARGS = ["--disable-custom-all-reduce", "--enforce-disable-flashinfer-allreduce-fusion"]


def tp_args(tp_size: int) -> list:
    """Server flags for `tp_size` tensor-parallel ranks (none for 1)."""
    if tp_size < 1:
        raise ValueError(f"--tp-size must be at least 1, not {tp_size}")
    return [] if tp_size == 1 else ["--tp-size", str(tp_size), *TP_ARGS]


def uniform(num_layers: int, every: int) -> str:
    """Full at layers 0, every, 2*every, ...; Shared elsewhere."""
    return "".join("F" if i % every == 0 else "S" for i in range(num_layers))


def configs(num_layers: int, pattern: str, *, low: str | None = None, searched: str | None = None,
            paged_rows: int = 128) -> dict:
    """a-d: the paper-table comparison; i: d's schedule given as indexcache gives it; e, f: lower
    retention and a searched shape (agentic); k-p, u: b and c with the CUDA kernel variables set,
    in the config's "env" (k, m: SGLang's v2 top-k for PAGED extends, the default since session
    21, set; n, p: also extends of up to `paged_rows` new tokens on the paged logits kernel; u:
    c with SGLang's own top-k, as c ran before session 21)."""
    full = json.dumps({"indexer_types": ["full"] * num_layers})
    native = json.dumps({"indexer_types": None, "index_topk_pattern": pattern})
    as_types = json.dumps({"indexer_types": ["full" if ch == "F" else "shared" for ch in pattern]})
    ic = ["--attention-backend", "indexcache", "--index-cache-pattern"]
    out = {
        "a": {"label": "dsa, all Full", "args": ["--attention-backend", "dsa", "--json-model-override-args", full]},
        "b": {"label": "indexcache, all Full", "args": [*ic, "F" * num_layers]},
        "c": {"label": f"indexcache, {pattern}", "args": [*ic, pattern]},
        "d": {"label": f"dsa native sharing, {pattern}", "args": ["--attention-backend", "dsa", "--json-model-override-args", native]},
        # a control: SGLang's dsa with the model config exactly as indexcache installs it (the
        # pattern as `indexer_types`), so that (i) against (c) isolates our backend and hook
        "i": {"label": f"dsa, {pattern} as indexer_types", "args": ["--attention-backend", "dsa", "--json-model-override-args", as_types]},
    }
    v2 = {"SGLANG_INDEXCACHE_TOPK": "v2"}
    paged = {**v2, "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS": str(paged_rows)}
    out["k"] = {**out["b"], "label": "indexcache, all Full, v2 top-k", "env": v2}
    out["m"] = {**out["c"], "label": f"indexcache, {pattern}, v2 top-k", "env": v2}
    out["n"] = {**out["b"], "label": f"indexcache, all Full, v2 top-k, paged extend <= {paged_rows}", "env": paged}
    out["p"] = {**out["c"], "label": f"indexcache, {pattern}, v2 top-k, paged extend <= {paged_rows}", "env": paged}
    out["u"] = {**out["c"], "label": f"indexcache, {pattern}, SGLang's top-k", "env": {"SGLANG_INDEXCACHE_TOPK": "upstream"}}
    if low:
        out["e"] = {"label": f"indexcache, {low}", "args": [*ic, low]}
    if searched:
        out["f"] = {"label": f"indexcache, {searched} (searched shape)", "args": [*ic, searched]}
    return out


# Model shapes a benchmark runs (config + tokenizer, dummy weights). What is real about them
# is in the README ("Benchmarks"): attention, indexer and MoE dimensions and the layer count;
# not real: the weights, the expert count where cut, and (for one TP rank) the all-reduce.
SHAPES = {
    # GLM-4.7-Flash with DSA, 12 of its 47 layers: the shape of the paper-table comparison
    "flash-12": {"shape": "glm-4.7-flash", "num_layers": 12, "num_heads": 32, "overrides": {},
                 "pattern": "FSSSFSSSFSSS", "low": uniform(12, 8),
                 # the 3-Full pattern the greedy search found on the 12-layer trained model
                 # (benchmarks/results/pattern-study/search.json)
                 "searched": "FSSFSSSFSSSS"},
    # one tensor-parallel rank of GLM-5.2 at TP 8: 78 layers, 64/8 heads, the MoE and dense
    # MLP widths / 8, 32 of 256 routed experts (to fit one GPU), its declared schedule
    "glm-5.2-tp8": {"shape": "glm-5.2", "num_layers": 78, "num_heads": 8,
                    "overrides": {"n_routed_experts": 32, "moe_intermediate_size": 256, "intermediate_size": 1536},
                    # declared schedule (21 Full); lower retention keeps every other declared
                    # Full layer (11 of 78): a real checkpoint has indexer weights on no others
                    "pattern": None, "low": None, "searched": None},
}
DEFAULT_PATTERN = SHAPES["flash-12"]["pattern"]  # `run`'s default (the paper table, 12 layers)


def random_ids(rng, n: int, vocab: int) -> list:
    """Random token ids away from both ends of the vocabulary (where special tokens live)."""
    margin = min(1000, vocab // 8)
    return [rng.randrange(margin, vocab - margin) for _ in range(n)]


def kv_pool_tokens(log_text: str) -> int | None:
    """SGLang's KV pool size (tokens), the last `max_total_num_tokens=` its log printed."""
    pool = re.findall(r"max_total_num_tokens=(\d+)", log_text)
    return int(pool[-1]) if pool else None


# The server's side of each request (SGLang's `--enable-request-time-stats-logging`):
# queue time and forward time (scheduled to finished, decode included)
TIME_STATS = re.compile(r"ReqTimeStats\(rid=(?!HEALTH_CHECK)\S+, input_len=(\d+), cached_input_len=(\d+), "
                        r"output_len=(\d+),.*?queue_duration=([0-9.]+)(ms|s), forward_duration=([0-9.]+)(ms|s)")


def sec(value: str, unit: str) -> float:
    """A ReqTimeStats duration in seconds."""
    return float(value) / (1e3 if unit == "ms" else 1.0)


def read_text(path) -> str:
    """A file's text, gunzipped when its name ends in .gz (the committed per-request files, logs)."""
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as fh:
        return fh.read()


def bench_serving_result(path) -> dict:
    """bench_serving's per-request output (`--output-file`, plain or gzipped): it appends, so the
    last line is the run's."""
    return json.loads(read_text(path).splitlines()[-1])


def time_stats(text: str) -> dict:
    """input_len -> (cached, output_len, queue_s, forward_s) from ReqTimeStats lines."""
    return {int(m[0]): (int(m[1]), int(m[2]), sec(m[3], m[4]), sec(m[5], m[6])) for m in TIME_STATS.findall(text)}


def make_model(name: str, out, nextn: int = 0) -> "Path":
    """Write the config-only folder of SHAPES[name] at `out` (kept if it exists); `nextn` NextN
    (draft) layers for MTP (the shapes declare none)."""
    from pathlib import Path

    from sglang_indexcache.tiny_model import make_shape

    spec = SHAPES[name]
    out = Path(out)
    if not (out / "config.json").exists():
        overrides = {**spec["overrides"], **({"num_nextn_predict_layers": nextn} if nextn else {})}
        make_shape(spec["shape"], out, num_layers=spec["num_layers"], num_heads=spec["num_heads"],
                   overrides=overrides or None)
    return out


def nextn_layers(model) -> int:
    """The NextN (draft) layers a model folder's config declares (0 when it declares none)."""
    from pathlib import Path

    cfg = json.loads((Path(model) / "config.json").read_text())
    return int(cfg.get("num_nextn_predict_layers") or 0)


def shape_patterns(name: str) -> dict:
    """pattern / low / searched of a shape; a shape with a declared schedule takes it as `pattern`."""
    from sglang_indexcache.sharing import sglang_skips_topk
    from sglang_indexcache.tiny_model import SHAPES as MODEL_SHAPES

    spec = dict(SHAPES[name])
    if spec["pattern"] is None:  # the checkpoint's declared schedule, read as SGLang reads it
        cfg = MODEL_SHAPES[spec["shape"]]
        spec["pattern"] = "".join("S" if sglang_skips_topk(cfg, i) else "F" for i in range(spec["num_layers"]))
    if spec["low"] is None:
        fulls = [i for i, c in enumerate(spec["pattern"]) if c == "F"][::2]
        spec["low"] = "".join("F" if i in fulls else "S" for i in range(spec["num_layers"]))
    return spec


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("sglang", "sglang-kernel", "torch", "triton", "flashinfer-python", "sgl-flash-mla", "sgl-deep-gemm", "sglang-indexcache"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# Memory left outside SGLang's static pool (weights + KV) for activations, the indexer's
# logits and FlashMLA's workspace. Measured: a 128K prefill of the 12-layer Flash shape ran
# out of memory with 36 GB left (H100 80 GB at 0.55: `Tried to allocate 8.00 GiB` in
# flash_mla_sparse_fwd) and with 28 GB (H200 at 0.8), and ran with 56 GB (H100 at 0.3) and 63 GB
# (H200 at 0.55). So: static fraction = (total - 56 GiB) / total, within [0.1, 0.9]:
# 0.30 on an 80 GB H100, 0.60 on a 141 GB H200.
HEADROOM_GIB = 56


def mem_fraction_for(total_bytes: int, headroom_gib: float = HEADROOM_GIB) -> float:
    """`--mem-fraction-static` that leaves `headroom_gib` of a GPU of `total_bytes` outside the pool."""
    frac = (total_bytes - headroom_gib * 2**30) / total_bytes
    return round(min(0.9, max(0.1, frac)), 2)


def gpu_total_bytes() -> int:
    """Memory of GPU 0 as nvidia-smi reports it (no CUDA context in this process)."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        raise SystemExit("the benchmark needs a CUDA GPU (nvidia-smi not found); on CPU run "
                         "`python -m sglang_indexcache.bench agentic --device cpu --model-path models/deepseek-tiny "
                         "--pattern FSSFSS --configs c --size smoke` for a smoke run")
    smi = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, timeout=30, check=True)
    return int(smi.stdout.split()[0]) * 2**20  # MiB


GPU_STATE_FIELDS = ("index", "clocks.sm", "clocks.mem", "temperature.gpu", "power.draw", "memory.used",
                    "utilization.gpu")


def parse_gpu_state(csv_text: str) -> list:
    """nvidia-smi's `--query-gpu=GPU_STATE_FIELDS --format=csv,noheader,nounits`: one dict per GPU."""
    rows = []
    for line in csv_text.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(GPU_STATE_FIELDS):
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        rows.append({k: (float(v) if v.replace(".", "", 1).isdigit() else v) for k, v in zip(GPU_STATE_FIELDS, values)})
    return rows


def gpu_state() -> list | None:
    """Clocks, temperature, power and memory in use of every GPU now (None without nvidia-smi):
    recorded before each server starts and after its timed runs, so a benchmark shows whether a
    later configuration ran on a hotter, slower-clocked or still-occupied GPU."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return None
    smi = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(GPU_STATE_FIELDS)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30)
    return parse_gpu_state(smi.stdout) if smi.returncode == 0 else None


def gpu_info() -> dict:
    import torch

    info = {"name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    info["cuda"] = torch.version.cuda
    return info


def tokenizer_env(model) -> dict:
    """Server environment for a tokenizer padded with added tokens (a shape folder made before
    session 17; `tiny_model.build_tokenizer(cover=)` now pads the BPE's vocabulary instead).

    ~150K added `<tN>` tokens make SGLang's parallel prompt encoder (the chat door's default)
    split text on a regex alternation of every added token: measured on such a flash-12
    tokenizer, 129K tokens of an agentic turn whose replies are `<tN>` runs took 6.2 s there
    against 0.36 s for the tokenizer's own encode (same ids). A real checkpoint's tokenizer has a
    few hundred added tokens, so the benchmark turns the parallel encoder off only for such a
    tokenizer; SGLang then calls the tokenizer's own encode."""
    from pathlib import Path

    path = Path(model) / "tokenizer.json"
    if not path.exists():
        return {}
    added = json.loads(path.read_text()).get("added_tokens", [])
    return {"SGLANG_PARALLEL_PROMPT_ENCODE": "0"} if len(added) > PADDED_TOKENIZER_ADDED else {}


PADDED_TOKENIZER_ADDED = 10000  # more added tokens than any real checkpoint's tokenizer has
# the environment a benchmark sets on its servers (or they inherit from it: the benchmark's own
# environment passes to every server, e.g. SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit for
# indexer scores of a real scale on dummy weights), recorded with each configuration
# the CUDA kernel choices of backend/topk.py and backend/paged_extend.py
LONG_CONTEXT = 98304  # "a turn at >= 96K context" (issue 14's TTFT target)
KERNEL_ENV_KEYS = ("SGLANG_INDEXCACHE_TOPK", "SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS")


def kernel_defaults() -> dict:
    """What KERNEL_ENV_KEYS mean when a server's environment leaves them unset (the package's
    defaults change: v2 since session 21), recorded with a run."""
    from sglang_indexcache.backend.paged_extend import DEFAULT_ROWS
    from sglang_indexcache.backend.topk import DEFAULT as TOPK_DEFAULT

    return dict(zip(KERNEL_ENV_KEYS, (TOPK_DEFAULT, str(DEFAULT_ROWS))))


SERVER_ENV_KEYS = ("SGLANG_PARALLEL_PROMPT_ENCODE", "SGLANG_DSA_PREFILL_DENSE_ATTN_KV_LEN_THRESHOLD",
                   "SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS", *KERNEL_ENV_KEYS)


def server_env_arg(pairs: list) -> dict:
    """`--server-env KEY=VALUE ...` as a dict; anything else stops the benchmark, naming it."""
    bad = [kv for kv in pairs if "=" not in kv or not kv.split("=", 1)[0]]
    if bad:
        raise SystemExit(f"--server-env wants KEY=VALUE, got {bad}")
    return dict(kv.split("=", 1) for kv in pairs)


def inherited_env() -> dict:
    """The SERVER_ENV_KEYS this benchmark's own environment passes to its servers."""
    import os

    return {k: os.environ[k] for k in SERVER_ENV_KEYS if k in os.environ}


def prefill_graph_args(choice: str) -> list:
    """`--prefill-graphs` as server flags: `sglang` keeps SGLang's default breakable prefill CUDA
    graphs (on CUDA an extend of up to the chunk size, at most 8,192 tokens for MLA, replays one;
    their capture costs minutes per server), `off` turns them off: eager extends."""
    return ["--cuda-graph-backend-prefill", "disabled"] if choice == "off" else []


def dense_prefill_env() -> dict:
    """Without FA3 (the offline bundle strips sglang-kernel's 1.1 GB FA3 library), SGLang's
    DSA backend must not pick its dense MHA path for short prefills: threshold 0 keeps
    every prefill on sparse MLA (FlashMLA). Empty when FA3 is importable."""
    try:
        import sgl_kernel.flash_attn  # noqa: F401

        return {}
    except Exception:
        return {"SGLANG_DSA_PREFILL_DENSE_ATTN_KV_LEN_THRESHOLD": "0"}
