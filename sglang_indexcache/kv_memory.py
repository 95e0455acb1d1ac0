"""KV-cache bytes per token of a schedule, in SGLang 0.5.23's DSA pool layout (`plan`, the
startup table). Shared layers hold no index-K; the latent row is per layer whatever the
role. No SGLang imports.
"""

from __future__ import annotations

from sglang_indexcache.schedule import Schedule

# SGLang's DSA pool (`DSATokenToKVPool.quant_block_size`): fp8 values with one float32 scale
# per 128 of them, for the index keys and for an fp8 latent alike.
FP8_SCALE_BLOCK = 128


def _fp8_with_scales(values: int) -> int:
    return values + values // FP8_SCALE_BLOCK * 4


KV_DTYPES = ("bf16", "fp8_e4m3")


def latent_row_bytes(kv_lora_rank: int, rope_dim: int, kv_dtype: str = "bf16") -> int:
    """Bytes of one token's latent KV row in one layer, as SGLang 0.5.23's DSA pool lays it out.

    bf16: (kv_lora_rank + rope) x 2. fp8_e4m3 (the scaled layout of the FlashMLA kernels,
    `kv_cache_configurator`'s override dim): the latent in fp8, one float32 scale per 128
    values, the rope part kept in bf16: 512 + 16 + 128 = 656 B on DeepSeek-V3.2 / GLM-5.
    (TRTLLM's raw fp8 layout differs; those kernels are refused with indexcache.)
    """
    if kv_dtype == "bf16":
        return (kv_lora_rank + rope_dim) * 2
    if kv_dtype == "fp8_e4m3":
        return _fp8_with_scales(kv_lora_rank) + rope_dim * 2
    raise ValueError(f"kv dtype {kv_dtype!r}: one of {KV_DTYPES}")


def kv_memory(schedule: Schedule, *, kv_lora_rank: int, rope_dim: int, index_head_dim: int, kv_dtype: str = "bf16") -> dict:
    """Per-token KV bytes with every layer Full versus this schedule (SGLang's DSA pool layout:
    one latent row per layer, fp8 index keys only on layers that run an indexer)."""
    n = schedule.num_layers
    latent = n * latent_row_bytes(kv_lora_rank, rope_dim, kv_dtype)
    index_row = _fp8_with_scales(index_head_dim)
    all_full = latent + n * index_row
    this = latent + schedule.num_indexers * index_row
    return {
        "bytes_per_token_all_full": all_full,
        "bytes_per_token": this,
        "index_k_layers": schedule.num_indexers,
        "capacity_gain": all_full / this - 1.0,
        # --enable-hierarchical-cache: SGLang's host pools mirror these rows (the MLA host pool
        # a latent row per layer, the DSA indexer host pool index-K on the layers that own it)
        "host_bytes_per_token": this,
    }


def kv_memory_line(mem: dict, num_layers: int, kv_dtype: str = "bf16") -> str:
    return (
        f"KV memory per token ({kv_dtype} latent, fp8 index-K): {mem['bytes_per_token_all_full']} B all-Full, "
        f"{mem['bytes_per_token']} B with this schedule (index-K on {mem['index_k_layers']} of {num_layers} layers): "
        f"the same pool holds {mem['capacity_gain']:.1%} more tokens"
    )


def host_memory_line(mem: dict, num_layers: int) -> str:
    gib_tokens = 2**30 // mem["host_bytes_per_token"]
    return (
        f"Host memory per token (--enable-hierarchical-cache): {mem['host_bytes_per_token']} B, the GPU pool's rows; "
        f"index-K moves to host for the {mem['index_k_layers']} of {num_layers} layers that run an indexer "
        f"({gib_tokens} tokens per GiB of --hicache-size)"
    )
