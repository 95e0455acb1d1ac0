"""What a checkpoint folder declares about DSA sharing, read without loading any tensor.

No SGLang imports: the config comes from `config.json` as written, the indexer weights
from the safetensors index (or the safetensors headers).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Optional

from sglang_indexcache.sharing import CONFIG_SOURCE_KEYS

_INDEXER_KEY = re.compile(r"^model\.layers\.(\d+)\.self_attn\.indexer\.")


def read_raw_config(model_path: str) -> Optional[dict]:
    """`config.json` as written in a local model folder, or None (hub id, no file)."""
    path = Path(model_path) / "config.json"
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)


def _safetensors_keys(path: Path) -> list:
    # A safetensors file starts with a little-endian u64 header length and a JSON header.
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return [k for k in header if k != "__metadata__"]


def checkpoint_tensor_names(model_path: str) -> Optional[list]:
    """Every tensor name of a local safetensors checkpoint, or None when it cannot be told."""
    folder = Path(model_path)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        with open(index) as f:
            return list(json.load(f)["weight_map"])
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    return [k for p in files for k in _safetensors_keys(p)]


def indexer_weight_layers_between(model_path: str, lo: int, hi: int) -> Optional[frozenset]:
    """Layers in [lo, hi) whose checkpoint carries `self_attn.indexer.*` weights (the NextN /
    MTP layers of a DeepSeek-V3.2 or GLM-5 checkpoint are numbered from num_hidden_layers on).
    None when the folder has no safetensors: unknown."""
    names = checkpoint_tensor_names(model_path)
    if names is None:
        return None
    return frozenset(int(m.group(1)) for m in map(_INDEXER_KEY.match, names) if m and lo <= int(m.group(1)) < hi)


def indexer_weight_layers(model_path: str, num_layers: int) -> Optional[frozenset]:
    """Layers below `num_layers` whose checkpoint carries `self_attn.indexer.*` weights.

    None when the folder has no safetensors (a hub id, .bin weights): unknown.
    Draft/MTP layers (index >= num_layers) are not counted.
    """
    return indexer_weight_layers_between(model_path, 0, num_layers)


def buildable_indexer_layers(model_path: str, num_layers: int, *, dummy_weights: bool = False) -> frozenset:
    """The layers that can run an indexer: those with indexer weights, every layer under dummy
    weights or when the folder says nothing (no safetensors)."""
    weights = None if dummy_weights else indexer_weight_layers(model_path, num_layers)
    return frozenset(range(num_layers)) if weights is None else frozenset(weights)


def declared_sharing_config(raw: dict, overrides: dict[str, Any]) -> dict:
    """The sharing keys as the checkpoint and `--json-model-override-args` declare them.

    An override of `null` removes the key, as SGLang's override does.
    """
    text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else None
    merged = {**raw, **(text or {})}
    for key, value in overrides.items():
        merged[key] = value
    return {k: merged[k] for k in CONFIG_SOURCE_KEYS if merged.get(k) is not None}
