"""The CUDA path of the `indexcache` backend: SGLang's own DSA kernels, fail-closed sharing.

Full layers run SGLang's indexer (DeepGEMM logits, the fused top-k + logical-to-physical
transform, FlashMLA sparse attention: whatever `--dsa-*-backend` selects). Shared layers
get no indexer module and no index-K cache (the schedule is installed in the model config
as `indexer_types` before the model is built, so SGLang's memory pool skips them), and the
model's layer loop hands each Shared layer the top-k tensor of the layer before it.

What this class adds to SGLang's `dsa` backend is the check that the top-k a Shared layer
is handed by the model's layer loop is exactly its scheduled source's top-k from this
forward of this batch (a `TopkStore` keyed by tensor identity, filled and read by the hook
around `DeepseekV2DecoderLayer.forward`, `backend/hooks.py`). Any other tensor, or none, is
an `IndexCacheError` naming the layer: never a silent read of stale or foreign indices.

The check is host-side Python on object identity: no device data is read and nothing
synchronises. Under CUDA graphs it runs while the graph is captured; a replay re-executes
the captured kernels, whose top-k buffers are the graph's own static memory, so the
proven wiring is the replayed wiring. Replays are counted, not computed: the indexer calls
the hook saw in each graph's capture forward are kept per graph and added once per replay of
that graph; replaying a graph whose capture this backend did not see is an error. Decode
graphs (and `full` prefill graphs) are keyed (forward mode, batch size) and seen through
`init_forward_metadata_out_graph`; SGLang's default breakable prefill graphs never call it,
so the hooks around `BreakableCudaGraphBackend.capture_one` / `.replay` (`backend/hooks.py`)
report them, keyed ("PREFILL_GRAPH", their shape key). A breakable replay runs the layer stack
as one recorded graph, so the layer hook does not run; its attention and indexer calls run
eagerly between the graph's segments, on the tensors recorded at capture.

With SGLang's default fused top-k (`SGLANG_DSA_FUSE_TOPK=1`) the Full layer's top-k kernel
already emits physical KV slots, so Shared layers run no index transform either.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from sglang.srt.layers.attention.dsa_backend import DeepseekSparseAttnBackend
from sglang.srt.model_executor.forward_batch_info import ForwardMode

import sglang_indexcache.backend.paged_extend as paged_extend
from sglang_indexcache.backend.metrics import metrics_for, stats_path_for
from sglang_indexcache.backend.store import IndexCacheError, TopkStore, check_handed_topk
from sglang_indexcache.backend.topk import ENV as TOPK_ENV, ExtendTopK, choice_set as topk_set, chosen as chosen_topk
from sglang_indexcache.backend.topk import paged_kernel as paged_topk_kernel
from sglang_indexcache.integration.model_config import schedule_of
from sglang_indexcache.schedule import Role

logger = logging.getLogger("sglang_indexcache")


class IndexCacheDSABackend(DeepseekSparseAttnBackend):
    """`--attention-backend indexcache` on CUDA."""

    def __init__(self, model_runner, *args, **kwargs):
        super().__init__(model_runner, *args, **kwargs)
        self.schedule = schedule_of(model_runner.model_config)
        self.model = model_runner.model
        pool = model_runner.token_to_kv_pool
        start = getattr(pool, "start_layer", 0) or 0
        self.layer_range = range(start, start + pool.layer_num)
        self.last_layer = self.layer_range[-1]
        self.received_sources = self.schedule.received_sources(start, start + pool.layer_num)  # transfer
        self._received = None  # (forward batch id, the top-k it received), set before its first layer
        local = [self.schedule.layers[i] for i in self.layer_range]
        self.full_per_forward = sum(r.runs_indexer for r in local)
        self.shared_per_forward = len(local) - self.full_per_forward
        self.index_topk = int(model_runner.model_config.hf_text_config.index_topk)
        self.store = TopkStore()
        self.graph_replays = 0
        self.prefill_graph_replays = 0  # breakable prefill graphs (SGLang's default on CUDA)
        self.graph_counts: dict = {}  # graph key -> (indexer runs, skips) at capture
        self._capturing = None  # the graph being captured, set until the next eager forward or replay
        self._capturing_prefill = None  # the breakable prefill graph being captured (its key)
        self.dense_forwards = 0  # forwards on the dense-MHA prefill path: no layer reads a top-k
        self.stats_path = stats_path_for(model_runner)
        self.metrics = metrics_for(model_runner, self.schedule)  # Prometheus, with --enable-metrics
        # SGLANG_INDEXCACHE_TOPK (default v2-paged): plain PAGED extends run SGLang's v2 top-k too (backend/topk.py)
        kind = chosen_topk()
        self.extend_topk = ExtendTopK(self.dsa_topk_backend, kind) if kind != "upstream" else None
        if self.extend_topk is not None:
            if kind == "v2-paged":
                paged_topk_kernel()  # built (or read from the JIT cache) now: a failure stops start-up
            logger.info("indexcache CUDA backend: %s=%s, extends run SGLang's v2 top-k for PAGED calls too, %s (%s; "
                        "upstream keeps SGLang's choice)", TOPK_ENV, kind,
                        "the page-table map in the same kernel" if kind == "v2-paged" else "the page-table map in torch",
                        "set" if topk_set() else "the default")
        # SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS: short extends scored by the paged kernel (backend/paged_extend.py)
        self.paged_extend_rows = paged_extend.max_rows()
        self.paged_extend_calls = 0
        if self.paged_extend_rows:
            logger.info("indexcache CUDA backend: %s=%d, extends of at most that many new tokens are scored "
                        "by the paged logits kernel (%s; 0 turns it off)", paged_extend.ENV, self.paged_extend_rows,
                        "set" if paged_extend.rows_set() else "the default")
        logger.info(
            "indexcache CUDA backend: layers %d-%d, %d run the indexer, %d reuse a source",
            self.layer_range[0], self.last_layer, self.full_per_forward, self.shared_per_forward,
        )

    def install_schedule(self, schedule) -> None:
        """A switchable server's new pattern (`integration/switch.py`), between forwards. Such a
        server runs without CUDA graphs (refused at startup otherwise): no graph captured under
        the old roles can replay."""
        from sglang_indexcache.backend.hooks import set_layer_roles

        if self.graph_counts:
            raise IndexCacheError(f"CUDA graphs were captured under {self.schedule.pattern}; refusing to switch")
        set_layer_roles(self.model, schedule)
        self.schedule = schedule
        if self.metrics is not None:
            self.metrics.set_schedule(schedule)
        local = [schedule.layers[i] for i in self.layer_range]
        self.full_per_forward = sum(r.runs_indexer for r in local)
        self.shared_per_forward = len(local) - self.full_per_forward

    def get_indexer_metadata(self, layer_id, forward_batch):
        metadata = super().get_indexer_metadata(layer_id, forward_batch)
        if self.extend_topk is not None and forward_batch.forward_mode == ForwardMode.EXTEND:
            metadata = dataclasses.replace(metadata, topk_backend=self.extend_topk)
        return metadata

    def index_cache_extend_topk(self, original, indexer, args, kwargs):
        """A Full layer's extend scoring (`Indexer._get_topk_ragged`, through `backend/hooks.py`):
        the paged route where it applies (`backend/paged_extend.py`), else SGLang's."""
        from sglang_indexcache.backend.hooks import EXTEND_TOPK_PARAMS

        call = {**dict(zip(EXTEND_TOPK_PARAMS[1:], args)), **kwargs}
        rows = paged_extend.rows_to_route(indexer, call["forward_batch"], call["metadata"], self.paged_extend_rows)
        if not rows:
            return original(indexer, *args, **kwargs)
        self.paged_extend_calls += 1
        return paged_extend.topk(indexer, call["layer_id"], call["q_fp8"], call["weights"], call["metadata"], rows,
                                 call.get("topk_result"))

    # ---- forward boundaries ------------------------------------------------------------

    def init_forward_metadata(self, forward_batch):
        self._capturing = None  # an eager forward: whatever was being captured is done
        super().init_forward_metadata(forward_batch)

    def init_forward_metadata_out_graph(self, forward_batch, in_capture: bool = False):
        super().init_forward_metadata_out_graph(forward_batch, in_capture=in_capture)
        key = (forward_batch.forward_mode.name, int(forward_batch.batch_size))
        if in_capture:
            self._capturing = key  # its warm-ups and capture run through the hook next
        else:
            self._capturing = None
            self._count_replay(key)

    def index_cache_prefill_capture(self, key) -> None:
        """A breakable prefill graph's capture begins (its key) or ends (None): its warm-ups
        and capture run through the layer hook in between (`backend/hooks.py`)."""
        self._capturing_prefill = key

    def index_cache_prefill_replay(self, key, forward_batch) -> None:
        """A breakable prefill graph is about to replay for `forward_batch` (`backend/hooks.py`)."""
        self._capturing = None
        self._count_replay(key, mode=forward_batch.forward_mode.name, prefill=True)

    def _count_replay(self, key, mode=None, prefill: bool = False) -> None:
        # A replay runs the kernels its capture recorded; the wiring was checked at capture.
        counts = self.graph_counts.get(key)
        if counts is None:
            raise IndexCacheError(
                f"replaying the CUDA graph for {key}, whose capture did not run through the indexcache "
                f"check (captured: {sorted(self.graph_counts, key=str)}); refusing to attend on unchecked top-k"
            )
        self.graph_replays += 1
        self.prefill_graph_replays += prefill
        t = self.store.totals
        t["forwards"] += 1
        t["indexer_runs"] += counts[0]
        t["indexer_skips"] += counts[1]
        if self.metrics is not None:
            self.metrics.record(mode or key[0], *counts)
        self._write_stats(replay=True)

    # ---- the check (called by the hook around every DeepSeek decoder layer) ----

    def index_cache_received(self, forward_batch, topk) -> None:
        """What this stage's forward received from the previous stage (`backend/hooks.py`,
        before its first layer); entered in the store when that layer begins the forward."""
        self._received = (id(forward_batch), topk)

    def _enter_received(self, forward_batch, rows: int, dense: bool) -> None:
        received, self._received = self._received, None
        topk = received[1] if received is not None and received[0] == id(forward_batch) else None
        for source in self.received_sources:
            if topk is not None:
                self.store.receive(source, topk, batch=id(forward_batch), num_tokens=int(topk.shape[0]))
            elif dense:  # a dense-MHA forward reads no top-k; SGLang sends none
                self.store.receive(source, None, batch=id(forward_batch), num_tokens=rows)

    def index_cache_layer(self, original, layer, args, kwargs, forward_batch, prev_topk):
        """Run one decoder layer; a Shared layer only with its source's top-k of this forward.

        Checked at the model's layer loop, where upstream carries the top-k from layer to
        layer: the attention call itself may see a copy (breakable CUDA graphs hand eager
        segments static buffers), the carried object is the one that proves provenance.
        """
        layer_id = layer.layer_id
        # forward(positions, hidden_states, forward_batch, ...): one top-k row per query token.
        # Counted from positions: under TP, past the first layer, hidden_states may be an
        # opaque handle of a deferred all-reduce (SGLang's layer_boundary `OwedOutput`).
        rows = _rows(kwargs.get("positions", args[0] if args else None),
                     kwargs.get("hidden_states", args[1] if len(args) > 1 else None))
        dense = bool(getattr(self, "use_mha", False))  # dense-MHA prefill: attention reads no top-k
        if layer_id == self.layer_range[0]:
            # every forward (eager, warm-up, capture) enters at this stage's first layer
            self.store.begin(id(forward_batch))
            self.dense_forwards += dense
            if self.received_sources:
                self._enter_received(forward_batch, rows, dense)
        role = self.schedule.layers[layer_id]
        batch = id(forward_batch)
        if role.role is Role.SHARED:
            expected = self.store.get(layer_id, role.source, batch=batch, num_tokens=rows)
            if not dense:
                check_handed_topk(layer_id, role.source, prev_topk, expected, (rows, self.index_topk))
        out = original(layer, *args, **kwargs)
        if role.role is not Role.SHARED:
            topk = out[1] if isinstance(out, tuple) and len(out) > 1 else None
            self.store.put(layer_id, topk, batch=batch, num_tokens=rows)
        if layer_id == self.last_layer:
            c = self.store.counters
            capturing = self._capturing_prefill or self._capturing
            if capturing is not None:  # the last forward run for a graph is its capture
                self.graph_counts[capturing] = (c.indexer_runs, c.indexer_skips)
            if self.metrics is not None:
                self.metrics.record(forward_batch.forward_mode.name, c.indexer_runs, c.indexer_skips)
            self._write_stats(replay=False)
        return out

    def _write_stats(self, *, replay: bool) -> None:
        if self.stats_path is None:
            return
        c = self.store.counters
        stats = {
            **self.store.totals,
            "graph_replays": self.graph_replays,
            "prefill_graph_replays": self.prefill_graph_replays,
            "graph_counts": {f"{m}:{bs}": list(v) for (m, bs), v in sorted(self.graph_counts.items(), key=str)},
            "dense_forwards": self.dense_forwards,
            # SGLANG_INDEXCACHE_TOPK=v2 or v2-paged: top-k calls our route served (None: the route is off),
            # and of them those the fused v2-paged kernel served
            "extend_topk_calls": None if self.extend_topk is None else self.extend_topk.calls,
            "extend_topk_fused_calls": None if self.extend_topk is None else self.extend_topk.fused_calls,
            # SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS: Full-layer extend scorings the paged route served
            "paged_extend_calls": self.paged_extend_calls if self.paged_extend_rows else None,
            "pattern": self.schedule.pattern,
            "last_forward": {
                "replay": replay,
                "ran": c.ran,
                "reused": {str(k): v for k, v in c.reused.items()},
                "received": c.received,
            },
        }
        tmp = f"{self.stats_path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(stats, fh)
        os.replace(tmp, self.stats_path)


def _rows(positions, hidden) -> int:
    """Query tokens of a layer call: positions' length, else hidden_states' rows, else -1."""
    for t in (positions, hidden):
        shape = getattr(t, "shape", None)
        if shape is not None and len(shape) >= 1:
            return int(shape[0])
    return -1
