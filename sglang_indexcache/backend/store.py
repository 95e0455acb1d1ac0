"""The per-forward top-k store: the only way a Shared layer gets indices.

A Full layer writes its top-k together with the identity of the forward and batch it
belongs to; a Shared layer reads its source's entry only if that entry was written
earlier in the same forward of the same batch (micro-batches are different batches).
Anything else is an `IndexCacheError` naming the layer: a Shared layer never runs on
stale, empty or foreign indices. No SGLang imports here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Hashable, Optional

logger = logging.getLogger("sglang_indexcache")


class IndexCacheError(RuntimeError):
    """A Shared layer found no valid source for its top-k."""


@dataclass
class ForwardCounters:
    """Indexer work in one forward: layers that ran it, layers that reused a source."""

    forward_id: int = 0
    indexer_runs: int = 0
    indexer_skips: int = 0
    ran: list = field(default_factory=list)
    reused: dict = field(default_factory=dict)  # layer -> source
    received: list = field(default_factory=list)  # sources whose top-k came from the previous stage


@dataclass(frozen=True)
class _Entry:
    layer: int
    forward_id: int
    batch: Hashable
    num_tokens: int
    indices: Any


# Test-only fault injection: when this variable names a fault, every Shared layer's read is
# handed that wrong source, and the store's checks must refuse it. Off unless set.
FAULT_ENV = "SGLANG_INDEXCACHE_FAULT"
FAULTS = {
    "previous": "the previous forward's top-k",
    "foreign": "another batch's (micro-batch's) top-k",
    "none": "no top-k",
    "shape": "a top-k for another token count",
    "later": "a later layer's top-k",
}


def _fault_from_env() -> Optional[str]:
    fault = os.environ.get(FAULT_ENV) or None
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"{FAULT_ENV}={fault!r}: not one of {sorted(FAULTS)}")
    return fault


class TopkStore:
    """Holds at most one forward's top-k per layer; `begin()` starts a new forward."""

    def __init__(self) -> None:
        self._forward_id = 0
        self._batch: Optional[Hashable] = None
        self._entries: Dict[int, _Entry] = {}
        self.counters = ForwardCounters()
        self.totals = {"forwards": 0, "indexer_runs": 0, "indexer_skips": 0}
        self.fault = _fault_from_env()
        self._previous: Dict[int, _Entry] = {}  # kept only under the "previous" fault

    @property
    def forward_id(self) -> int:
        return self._forward_id

    def begin(self, batch: Hashable) -> int:
        """Start a forward of `batch`; every earlier entry becomes unreadable."""
        if self._forward_id and logger.isEnabledFor(logging.DEBUG):
            c = self.counters
            logger.debug("indexcache forward %d: indexer ran on %d layers, skipped on %d", c.forward_id, c.indexer_runs, c.indexer_skips)
        self._forward_id += 1
        self._batch = batch
        if self.fault == "previous":
            self._previous = dict(self._entries)
        self._entries.clear()
        self.counters = ForwardCounters(forward_id=self._forward_id)
        self.totals["forwards"] += 1
        return self._forward_id

    def _check_batch(self, layer: int, batch: Hashable) -> None:
        if self._forward_id == 0 or batch != self._batch:
            raise IndexCacheError(
                f"layer {layer}: top-k used outside the forward it belongs to "
                f"(store is on forward {self._forward_id} of batch {self._batch!r}, caller is batch {batch!r})"
            )

    def put(self, layer: int, indices: Any, *, batch: Hashable, num_tokens: int) -> None:
        """A Full layer's top-k for this forward."""
        self._check_batch(layer, batch)
        self._entries[layer] = _Entry(layer, self._forward_id, batch, num_tokens, indices)
        self.counters.indexer_runs += 1
        self.counters.ran.append(layer)
        self.totals["indexer_runs"] += 1

    def receive(self, source: int, indices: Any, *, batch: Hashable, num_tokens: int) -> None:
        """The top-k of `source`, a layer of the previous pipeline stage, as this forward received
        it (`--index-cache-pp-handoff transfer`): readable by this stage's Shared layers of that
        source in this forward of this batch only, like a top-k made here; `num_tokens` is the
        number of rows received, checked against the reader's. Counts no indexer run. A caller
        that received nothing does not call this, so a read of that source fails."""
        self._check_batch(source, batch)
        self._entries[source] = _Entry(source, self._forward_id, batch, num_tokens, indices)
        self.counters.received.append(source)

    def own(self, layer: int, *, batch: Hashable, num_tokens: int) -> Any:
        """A Full layer reading back the top-k it wrote in this forward."""
        return self._read(layer, layer, batch, num_tokens, role="Full")

    def get(self, layer: int, source: int, *, batch: Hashable, num_tokens: int) -> Any:
        """A Shared layer reading its source's top-k; counts the skipped indexer call."""
        if source is None or source >= layer:
            raise IndexCacheError(f"layer {layer} is Shared but its source {source} is not an earlier layer")
        indices = self._read(layer, source, batch, num_tokens, role="Shared")
        self.counters.indexer_skips += 1
        self.counters.reused[layer] = source
        self.totals["indexer_skips"] += 1
        return indices

    def _read(self, layer: int, source: int, batch: Hashable, num_tokens: int, *, role: str) -> Any:
        self._check_batch(layer, batch)
        entry = self._entries.get(source)
        if self.fault is not None and role == "Shared":
            entry = self._inject(layer, entry)
        if entry is None:
            what = "its indexer did not run" if source == layer else f"its source layer {source} wrote no top-k"
            raise IndexCacheError(
                f"layer {layer} ({role}) has no top-k in forward {self._forward_id}: {what} in this forward "
                f"of this batch; refusing to attend on stale or missing indices"
            )
        if (entry.layer, entry.forward_id, entry.batch) != (source, self._forward_id, batch):
            raise IndexCacheError(
                f"layer {layer} ({role}) was handed the top-k of layer {entry.layer} from forward "
                f"{entry.forward_id} of batch {entry.batch!r}, not layer {source}'s from forward "
                f"{self._forward_id} of batch {batch!r}; refusing to attend on stale or foreign indices"
            )
        if entry.num_tokens != num_tokens:
            raise IndexCacheError(
                f"layer {layer} ({role}): layer {source}'s top-k covers {entry.num_tokens} tokens, "
                f"this batch has {num_tokens}"
            )
        return entry.indices

    def _inject(self, layer: int, entry: Optional[_Entry]) -> Optional[_Entry]:
        if entry is None or self.fault == "none":
            return None
        if self.fault == "previous":
            return self._previous.get(entry.layer)
        changes = {"foreign": {"batch": ("foreign", entry.batch)}, "shape": {"num_tokens": entry.num_tokens + 1},
                   "later": {"layer": layer + 1}}[self.fault]
        return replace(entry, **changes)


def check_handed_topk(layer: int, source: int, handed: Any, expected: Any, shape: tuple) -> None:
    """A Shared layer of a sparse forward attends only on `expected`, its source's top-k of this
    forward (the very object, not an equal copy), of `shape` = (tokens of the forward, index_topk).

    Raises `IndexCacheError` naming the layer for anything else: none, another tensor (a previous
    forward's, another micro-batch's, a later layer's), or the wrong shape.
    """
    def what(t: Any) -> str:
        return "none" if t is None else f"a tensor of shape {tuple(getattr(t, 'shape', ()))}"

    if expected is None:
        raise IndexCacheError(
            f"layer {layer} is Shared but its source layer {source} returned no top-k in this sparse "
            "forward; refusing to attend on missing indices"
        )
    if handed is not expected:
        raise IndexCacheError(
            f"layer {layer} is Shared (source: layer {source}) but was handed {what(handed)} that is not "
            f"layer {source}'s top-k from this forward; refusing to attend"
        )
    if tuple(handed.shape) != tuple(shape):
        raise IndexCacheError(
            f"layer {layer} is Shared (source: layer {source}): the top-k has shape {tuple(handed.shape)}, "
            f"this forward needs {tuple(shape)} (tokens, index_topk); refusing to attend"
        )
