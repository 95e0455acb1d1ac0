"""The CPU path of the `indexcache` backend: DSA in plain torch inside SGLang's engine.

SGLang's scheduler, radix cache, chunked prefill and memory pools run unchanged; this
backend supplies what SGLang 0.5.23 has no CPU code for:

* the lightning indexer (SGLang's `Indexer.forward_native` raises; the plugin routes it
  here, see `run_indexer`), with unquantised float32 index keys kept in our own index-K
  store, one row per KV slot, for the layers that run an indexer only;
* sparse MLA over the selected positions, reading the latent KV straight from SGLang's
  pool through `req_to_token`;
* IndexCache: every top-k goes through a per-forward `TopkStore`; a Shared layer reads its
  source's entry for this forward of this batch or fails with an error naming the layer.

Extend (cold, after a radix hit, chunked, mixed) and decode share one code path: each
request contributes `ext` query tokens at positions `prefix .. prefix+ext-1` and sees its
keys `0 .. prefix+ext-1` through its `req_to_token` row.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

import torch

from sglang.srt.layers.attention.base_attn_backend import AttentionBackend

from sglang_indexcache.backend.metrics import metrics_for, stats_path_for
from sglang_indexcache.backend.store import IndexCacheError, TopkStore
from sglang_indexcache.integration.model_config import schedule_of
from sglang_indexcache.backend.ops import causal_topk, index_scores, indexer_project, sparse_mla
from sglang_indexcache.schedule import Role

logger = logging.getLogger("sglang_indexcache")


@dataclass
class _Req:
    row: int  # req_to_token row
    prefix: int  # tokens already in the KV cache
    ext: int  # new tokens in this forward
    q_start: int  # first of this request's rows in the batch's token dimension
    slots: torch.Tensor  # [prefix + ext] KV slots of positions 0 .. prefix+ext-1

    @property
    def rows(self) -> slice:
        return slice(self.q_start, self.q_start + self.ext)

    def positions(self) -> torch.Tensor:
        return torch.arange(self.prefix, self.prefix + self.ext)


@dataclass
class _Meta:
    reqs: List[_Req]
    num_tokens: int
    batch: tuple


class IndexCacheCPUBackend(AttentionBackend):
    """`--attention-backend indexcache --device cpu`."""

    def __init__(self, model_runner):
        super().__init__()
        self.device = torch.device(model_runner.device)
        self.req_to_token = model_runner.req_to_token_pool.req_to_token
        self.pool = model_runner.token_to_kv_pool
        self.schedule = schedule_of(model_runner.model_config)
        cfg = model_runner.model_config
        self.kv_lora_rank = cfg.kv_lora_rank
        self.rope_dim = cfg.qk_rope_head_dim
        text = cfg.hf_text_config
        self.index_head_dim = text.index_head_dim
        self.use_mha = False  # DeepSeek dispatch: always the absorbed MLA path
        self.forward_metadata: Optional[_Meta] = None
        self.store = TopkStore()

        start = getattr(self.pool, "start_layer", 0) or 0
        end = start + self.pool.layer_num
        self.last_layer = end - 1
        self.received_sources = self.schedule.received_sources(start, end)  # transfer handoff
        # SGLANG_INDEXCACHE_STATS=path: the indexer counters as JSON, rewritten after
        # every forward (tests and the demo read it; off by default).
        self.stats_path = stats_path_for(model_runner)
        self.metrics = metrics_for(model_runner, self.schedule)  # Prometheus, with --enable-metrics
        self._mode = None
        rows = self.pool.get_key_buffer(start).shape[0]
        # Index keys for layers that can run their indexer; Shared layers get none (a switchable
        # server: every layer built with its indexer, `--index-cache-switchable`)
        built = getattr(cfg, "index_cache_switchable", None)
        self.model = model_runner.model
        self.index_k = {
            r.layer: torch.zeros(rows, self.index_head_dim, dtype=torch.float32, device=self.device)
            for r in self.schedule.layers
            if start <= r.layer < end and (r.runs_indexer if built is None else r.layer in built)
        }
        mib = sum(t.numel() * 4 for t in self.index_k.values()) / 2**20
        logger.info(
            "indexcache CPU backend: layers %d-%d, %d index-K caches (float32, %d rows, %.1f MiB); "
            "%d Shared layers hold none",
            start, end - 1, len(self.index_k), rows, mib, (end - start) - len(self.index_k),
        )

    def install_schedule(self, schedule) -> None:
        """A switchable server's new pattern (`integration/switch.py`), between forwards."""
        from sglang_indexcache.backend.hooks import set_layer_roles

        missing = [r.layer for r in schedule.layers if r.runs_indexer and r.layer not in self.index_k
                   and r.layer <= self.last_layer]
        if missing:
            raise IndexCacheError(f"layer(s) {missing} have no index-K cache on this server")
        set_layer_roles(self.model, schedule)
        self.schedule = schedule
        if self.metrics is not None:
            self.metrics.set_schedule(schedule)

    # ---- per-forward metadata -------------------------------------------------------

    def init_forward_metadata(self, forward_batch):
        mode = forward_batch.forward_mode
        self._mode = mode.name
        if mode.is_idle():
            self.forward_metadata = _Meta([], 0, (id(forward_batch),))
            self.store.begin(self.forward_metadata.batch)
            return
        if not (mode.is_decode() or mode == mode.EXTEND or mode.is_mixed()):
            raise NotImplementedError(
                f"indexcache CPU backend: forward mode {mode.name} is not supported (extend, mixed and decode are)"
            )
        rows = forward_batch.req_pool_indices.tolist()
        seq_lens = (
            forward_batch.seq_lens_cpu if forward_batch.seq_lens_cpu is not None else forward_batch.seq_lens.cpu()
        ).tolist()
        if mode.is_decode():
            exts = [1] * len(rows)
        else:
            exts = list(forward_batch.extend_seq_lens_cpu)
        reqs, q_start = [], 0
        for row, seq_len, ext in zip(rows, seq_lens, exts):
            slots = self.req_to_token[row, :seq_len].long()
            reqs.append(_Req(row, seq_len - ext, ext, q_start, slots))
            q_start += ext
        self.forward_metadata = _Meta(reqs, q_start, (id(forward_batch), mode.name, len(rows)))
        self.store.begin(self.forward_metadata.batch)

    def get_indexer_metadata(self, layer_id, forward_batch):
        return self.forward_metadata

    def index_cache_received(self, forward_batch, topk) -> None:
        """This stage's forward received `topk` from the previous stage (`backend/hooks.py`,
        before any layer): the entry of every received source, for this forward of this batch
        only. Nothing received (None) leaves the sources empty, and their readers fail."""
        meta = self.forward_metadata
        if meta is None or meta.batch[0] != id(forward_batch):
            raise IndexCacheError("a received top-k arrived for a forward this backend did not set up")
        if topk is None:
            return
        for source in self.received_sources:
            self.store.receive(source, topk, batch=meta.batch, num_tokens=int(topk.shape[0]))

    # ---- the lightning indexer (Full and Promoted layers) ---------------------------

    def run_indexer(self, indexer, x, q_lora, positions, forward_batch, layer_id) -> torch.Tensor:
        """Top-k key positions ([T, index_topk] int32, -1 padded) for this layer's queries."""
        meta = self.forward_metadata
        role = self.schedule.layers[layer_id]
        if not role.runs_indexer:
            raise IndexCacheError(f"layer {layer_id} is Shared in the schedule but its indexer was called")
        if getattr(indexer, "num_init_tokens", 0) or getattr(indexer, "num_local_tokens", 0):
            raise NotImplementedError("indexcache CPU backend: index_init_tokens / index_local_tokens are not supported")
        if isinstance(x, tuple):
            raise NotImplementedError("indexcache CPU backend: quantised indexer inputs are not supported")
        T = x.shape[0]
        if T != meta.num_tokens:
            raise IndexCacheError(f"layer {layer_id}: indexer got {T} tokens, the batch has {meta.num_tokens}")
        cos_sin = indexer.rotary_emb.cos_sin_cache.index_select(0, positions.long()).float()
        cos, sin = cos_sin.chunk(2, dim=-1)
        k_norm = indexer.k_norm
        q, k, w = indexer_project(
            x,
            q_lora,
            wq_b=indexer.wq_b.weight,
            wk=indexer.wk.weight,
            weights_proj=indexer.weights_proj.weight,
            k_norm_weight=k_norm.weight,
            k_norm_bias=getattr(k_norm, "bias", None),
            k_norm_eps=getattr(k_norm, "variance_epsilon", getattr(k_norm, "eps", 1e-6)),
            cos=cos,
            sin=sin,
            n_heads=indexer.n_heads,
            rope_dim=indexer.rope_head_dim,
            interleaved=not indexer.is_neox_style,
        )
        index_k = self.index_k[layer_id]
        index_k[forward_batch.out_cache_loc.long()] = k
        topk = torch.full((T, indexer.index_topk), -1, dtype=torch.int32, device=self.device)
        for req in meta.reqs:
            scores = index_scores(q[req.rows], w[req.rows], index_k[req.slots], softmax_scale=indexer.softmax_scale)
            topk[req.rows] = causal_topk(scores, req.positions(), indexer.index_topk)
        self.store.put(layer_id, topk, batch=meta.batch, num_tokens=T)
        return topk

    # ---- sparse MLA -----------------------------------------------------------------

    def _topk_for(self, layer_id: int, num_tokens: int) -> torch.Tensor:
        role = self.schedule.layers[layer_id]
        batch = self.forward_metadata.batch
        if role.role is Role.SHARED:
            return self.store.get(layer_id, role.source, batch=batch, num_tokens=num_tokens)
        return self.store.own(layer_id, batch=batch, num_tokens=num_tokens)

    def _attend(self, q, k, v, layer, forward_batch, save_kv_cache=True, q_rope=None, k_rope=None, topk_indices=None, **_):
        meta = self.forward_metadata
        L, R = self.kv_lora_rank, self.rope_dim
        H = layer.tp_q_head_num
        T = q.shape[0]
        kv_buf = self.pool.get_key_buffer(layer.layer_id)  # [rows, 1, L+R]
        if k is not None and save_kv_cache:
            latent = k.view(T, 1, L) if k_rope is None else torch.cat((k.view(T, 1, L), k_rope.view(T, 1, R)), dim=-1)
            kv_buf[forward_batch.out_cache_loc.long()] = latent.to(kv_buf.dtype)
        q_lat = q.view(T, H, -1) if q_rope is None else torch.cat((q.view(T, H, L), q_rope.view(T, H, R)), dim=-1)
        topk = self._topk_for(layer.layer_id, T)
        kv_rows = kv_buf.view(kv_buf.shape[0], L + R)
        out = torch.empty(T, H, L, dtype=torch.float32, device=self.device)
        for req in meta.reqs:
            sel = topk[req.rows]  # [ext, K] positions, -1 unused
            gathered = kv_rows[req.slots[sel.clamp(min=0).long()]]  # [ext, K, L+R]
            out[req.rows] = sparse_mla(q_lat[req.rows], gathered, sel, sm_scale=layer.scaling, kv_lora_rank=L)
        if layer.layer_id == self.last_layer:
            self._forward_done()
        return out.view(T, H * L).to(q.dtype)

    def _forward_done(self) -> None:
        c = self.store.counters
        logger.debug("indexcache forward %d: indexer ran on layers %s, reused on %s", c.forward_id, c.ran, c.reused)
        if self.metrics is not None:
            self.metrics.record(self._mode, c.indexer_runs, c.indexer_skips)
        if self.stats_path is None:
            return
        stats = {
            **self.store.totals,
            "pattern": self.schedule.pattern,
            "last_forward": {"ran": c.ran, "reused": {str(k): v for k, v in c.reused.items()}, "received": c.received},
        }
        tmp = f"{self.stats_path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(stats, fh)
        os.replace(tmp, self.stats_path)

    def forward_extend(self, q, k, v, layer, forward_batch, save_kv_cache=True, **kwargs):
        return self._attend(q, k, v, layer, forward_batch, save_kv_cache, **kwargs)

    def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True, **kwargs):
        return self._attend(q, k, v, layer, forward_batch, save_kv_cache, **kwargs)
