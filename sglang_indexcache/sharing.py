"""SGLang's DSA top-k sharing as a model config declares it: the keys, their precedence, checks.

`sglang_skips_topk` is SGLang 0.5.23's `configs/model_config.py::dsa_layer_skips_topk` on a
plain mapping (checked against the real function by `tests/test_schedule_equivalence.py`);
the rest says which key is in force, rejects values SGLang would misread, and notes keys that
are present but shadowed. No SGLang import; `schedule.build_schedule` is the user.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

# Config keys that decide DSA top-k sharing, in SGLang 0.5.23's precedence order
# (configs/model_config.py::dsa_layer_skips_topk).
CONFIG_SOURCE_KEYS = (
    "indexer_types",
    "cli_factor",
    "index_topk_pattern",
    "index_topk_freq",
    "index_skip_topk_offset",
)


class ScheduleError(ValueError):
    """An IndexCache schedule that cannot run correctly; the message names layers and fixes."""


def sglang_skips_topk(config: Mapping[str, Any], layer: int) -> bool:
    """SGLang 0.5.23's `dsa_layer_skips_topk` rule on a plain mapping, for any input it accepts.

    True means "Shared" (reuse the carried top-k). Kept identical to upstream, including
    its defaults; `tests/test_schedule_equivalence.py` checks it against the real function.
    """
    indexer_types = config.get("indexer_types")
    if indexer_types is not None:
        return 0 <= layer < len(indexer_types) and indexer_types[layer] == "shared"
    cli_factor = config.get("cli_factor") or 1
    if cli_factor > 1:
        return layer % cli_factor != 0
    pattern = config.get("index_topk_pattern")
    if pattern is not None:
        return layer < len(pattern) and pattern[layer] == "S"
    freq = config.get("index_topk_freq") or 1
    offset = config.get("index_skip_topk_offset")
    if offset is not None:
        return max(layer - offset + 1, 0) % freq != 0
    return max(layer - 1, 0) % freq != 0


def source_in_force(config: Mapping[str, Any]) -> Optional[str]:
    """The config key SGLang's rule actually reads, or None when only defaults apply."""
    if config.get("indexer_types") is not None:
        return "indexer_types"
    if (config.get("cli_factor") or 1) > 1:
        return "cli_factor"
    if config.get("index_topk_pattern") is not None:
        return "index_topk_pattern"
    if config.get("index_topk_freq") is not None:
        return "index_topk_freq"
    return None


def validate_config(num_layers: int, config: Mapping[str, Any], key: Optional[str]) -> None:
    """Reject a source in force that SGLang would silently read as Full (or crash on).

    Sources shadowed by a higher-precedence one are not read; `shadowed_notes` reports them.
    """
    if key == "indexer_types":
        types = config[key]
        bad = [i for i, t in enumerate(types) if t not in ("full", "shared")]
        if bad:
            raise ScheduleError(
                f"config indexer_types has values other than 'full'/'shared' at layer(s) {bad[:10]}"
            )
        if len(types) != num_layers:
            raise ScheduleError(
                f"config indexer_types has {len(types)} entries but the model has {num_layers} layers; "
                "give one entry per layer (or override with --index-cache-pattern)"
            )
    elif key == "index_topk_pattern":
        pattern = config[key]
        bad = [i for i, c in enumerate(pattern) if c not in "FS"]
        if bad:
            raise ScheduleError(
                f"config index_topk_pattern has characters other than 'F'/'S' at layer(s) {bad[:10]}"
            )
        if len(pattern) != num_layers:
            raise ScheduleError(
                f"config index_topk_pattern has {len(pattern)} characters but the model has "
                f"{num_layers} layers; give one per layer (or override with --index-cache-pattern)"
            )
    elif key == "index_topk_freq":
        if config[key] < 1:
            raise ScheduleError(f"config index_topk_freq must be >= 1, got {config[key]}")
        offset = config.get("index_skip_topk_offset")
        if offset is not None and offset < 1:
            raise ScheduleError(
                f"config index_skip_topk_offset must be >= 1, got {offset} (layer 0 would be Shared)"
            )
    cli_factor = config.get("cli_factor")
    if cli_factor is not None and cli_factor < 1:
        raise ScheduleError(f"config cli_factor must be >= 1, got {cli_factor}")


def describe_config(config: Mapping[str, Any], key: Optional[str]) -> str:
    if key is None:
        return "SGLang default (no sharing configured: every layer Full)"
    if key == "index_topk_freq":
        off = config.get("index_skip_topk_offset")
        return f"config index_topk_freq={config[key]}, index_skip_topk_offset={off}"
    if key in ("indexer_types", "index_topk_pattern"):
        return f"config {key}"
    return f"config {key}={config[key]}"


def shared_mask(num_layers: int, config: Mapping[str, Any]) -> list:
    return [sglang_skips_topk(config, i) for i in range(num_layers)]


def shadowed_notes(num_layers: int, config: Mapping[str, Any], in_force: Optional[str]) -> list:
    """Sources present in the config that would give another schedule but are not read."""
    notes = []
    base = shared_mask(num_layers, config)
    keys = [
        k
        for k in CONFIG_SOURCE_KEYS
        if config.get(k) is not None
        and k != "index_skip_topk_offset"
        and not (k == "cli_factor" and config[k] <= 1)
    ]
    for key in keys:
        if key == in_force:
            continue
        alone = {k: config.get(k) for k in CONFIG_SOURCE_KEYS if k == key}
        if key == "index_topk_freq":
            alone["index_skip_topk_offset"] = config.get("index_skip_topk_offset")
        if shared_mask(num_layers, alone) != base:
            notes.append(
                f"{describe_config(config, key)} is configured but NOT in force: "
                f"{in_force} takes precedence in SGLang. Use --index-cache-* flags to choose."
            )
    return notes
