"""Pure-torch DSA operators: the CPU path of the backend and the tests' reference glue."""

from sglang_indexcache.backend.ops.dsa import (
    apply_rope,
    causal_topk,
    index_scores,
    indexer_project,
    sparse_mla,
)

__all__ = ["apply_rope", "causal_topk", "index_scores", "indexer_project", "sparse_mla"]
