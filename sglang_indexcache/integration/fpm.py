"""SGLang's forward pass metrics as the benchmark reads them (`bench/fpm.py` subscribes).

SGLang 0.5.23 publishes one msgpack `ForwardPassMetrics` per forward
(`sglang/srt/observability/forward_pass_metrics.py`, positional encoding, schema version 1);
its own decoder reads them back here, so a schema change upstream fails loudly instead of
shifting fields.
"""

from __future__ import annotations


def decode(payload: bytes) -> dict:
    """One published message as plain Python (nested dicts for the request metrics)."""
    import msgspec
    from sglang.srt.observability.forward_pass_metrics import decode as sglang_decode

    return msgspec.to_builtins(sglang_decode(payload))
