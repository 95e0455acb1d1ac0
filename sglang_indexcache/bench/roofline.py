"""How far a Full layer's indexer kernels are from what the hardware allows (issue 20, item 1).

From a `bench turn` profile (kernel time per family, `turn.per_full_layer`) and the model's
indexer dimensions: per configuration and turn size, each indexer kernel's ms per Full layer,
the arithmetic and the bytes it must do at the least, the rates it achieved, and the floor
`max(flops / peak, bytes / bandwidth)` it could run at. `x floor` far above 1 is time that
is not arithmetic (launch-bound or latency-bound kernels, extra passes over memory).

What each kernel must do, per Full layer, for a turn of `n` new tokens on `C` cached ones
(query i, 0-based, sees C + i + 1 keys: causal):
  indexer logits (DeepGEMM fp8 MQA logits): 2 * H * D flops per (query, visible key); reads
      the index keys once ((C + n) x (D fp8 + one f32 scale)), the queries (n x H x D fp8) and
      the head weights (n x H f32), writes the [n, C + n] f32 logits SGLang allocates;
  top-k (sgl-kernel's fused top-k + transform): reads those logits once and writes
      n x index_topk int32 indices; comparisons only, no flop counted.
The ceilings are the H200's datasheet figures unless given: 1,979 dense fp8 TFLOP/s and
4.8 TB/s of HBM3e (a kernel rarely passes about 70-80 % of either)."""

from __future__ import annotations

H200 = {"name": "H200 datasheet", "fp8_tflops": 1979.0, "hbm_tbps": 4.8}


def dims_of(config: dict) -> dict:
    """The indexer dimensions of a model config."""
    return {"heads": config["index_n_heads"], "head_dim": config["index_head_dim"], "topk": config["index_topk"]}


def indexer_dims(results: dict) -> dict:
    """index heads, head dim and top-k of the benchmarked model: recorded in the results, else
    the shape's (`tiny_model.SHAPES`; benchmark shapes never change the indexer)."""
    if results.get("indexer"):
        return results["indexer"]
    from sglang_indexcache.bench.common import SHAPES as BENCH_SHAPES
    from sglang_indexcache.tiny_model import SHAPES

    bench_shape = BENCH_SHAPES[results["shape"]]
    return dims_of({**SHAPES[bench_shape["shape"]], **bench_shape["overrides"]})


def work(n: int, context: int, dims: dict) -> dict:
    """The least a Full layer's indexer kernels must compute and move for one turn."""
    h, d, k = dims["heads"], dims["head_dim"], dims["topk"]
    keys = context + n
    pairs = n * context + n * (n + 1) // 2  # (query, visible key) pairs
    logits_bytes = n * keys * 4
    return {
        "indexer logits": {"flops": 2 * h * d * pairs,
                           "bytes": keys * (d + 4) + n * h * d + n * h * 4 + logits_bytes},
        "top-k": {"flops": 0, "bytes": logits_bytes + n * k * 4},
    }


def per_full_layer(results: dict) -> dict:
    """ms per Full layer of each kernel family, per config and turn size."""
    out = {}
    for key, entry in results["configs"].items():
        fulls = entry["full_layers"]
        for n, turn in entry["turns"].items():
            fams = turn["kernels"].get("families", {})
            out.setdefault(key, {})[n] = {f: v["us"] / 1e3 / fulls for f, v in fams.items()
                                          if f in ("indexer logits", "top-k")}
    return out


def roofline(results: dict, ceilings: dict = H200) -> list:
    """One row per (configuration, turn size, indexer kernel)."""
    dims, rows = indexer_dims(results), []
    for key, per_n in per_full_layer(results).items():
        for n, fams in per_n.items():
            need = work(int(n), int(results["context"]), dims)
            for fam, ms in fams.items():
                w = need[fam]
                floor_ms = max(w["flops"] / (ceilings["fp8_tflops"] * 1e12),
                               w["bytes"] / (ceilings["hbm_tbps"] * 1e12)) * 1e3
                rows.append({"config": key, "new": int(n), "kernel": fam, "ms_per_full_layer": ms,
                             "gflop": w["flops"] / 1e9, "mbytes": w["bytes"] / 1e6,
                             "tflops": w["flops"] / (ms * 1e9) if ms else None,
                             "tbps": w["bytes"] / (ms * 1e9) if ms else None,
                             "floor_ms": floor_ms, "x_floor": ms / floor_ms if floor_ms else None})
    return rows


def roofline_table(results: dict, ceilings: dict = H200) -> str:
    rows = roofline(results, ceilings)
    lines = [f"indexer kernels per Full layer against {ceilings['name']} ({ceilings['fp8_tflops']:.0f} fp8 TFLOP/s, "
             f"{ceilings['hbm_tbps']} TB/s), turns on {results['context']} cached tokens",
             f"  {'config':<6} {'new':>6} {'kernel':<15} {'ms/F':>7} {'GFLOP':>9} {'MB':>9} {'TFLOP/s':>8} "
             f"{'TB/s':>6} {'floor ms':>9} {'x floor':>8}"]
    for r in rows:
        tf = f"{r['tflops']:8.1f}" if r["gflop"] else f"{'-':>8}"
        lines.append(f"  {r['config']:<6} {'+' + str(r['new']):>6} {r['kernel']:<15} {r['ms_per_full_layer']:7.3f} "
                     f"{r['gflop']:9.1f} {r['mbytes']:9.1f} {tf} {r['tbps']:6.2f} {r['floor_ms']:9.4f} "
                     f"{r['x_floor']:8.1f}")
    return "\n".join(lines)
