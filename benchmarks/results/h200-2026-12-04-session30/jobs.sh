#!/usr/bin/env bash
# Session 30's device jobs on one H200: `bash benchmarks/results/h200-2026-12-04-session30/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace are session 27's (carried in .bundle-fl, copied to $S/fl by the staging call; trace
# sha256 821ea80f), made on the project's CPU machine:
#   python -c "from sglang_indexcache.bench import common; common.make_model('flash-12', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s30; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl

# Issue 14's first target on flash-12 at concurrency 16: session 28 had (c) indexcache
# FSSSFSSSFSSS 3.5 % below (d) upstream native sharing on sessions/min, every pairing of servers.
# Each server now publishes every forward's GPU span (--forward-pass-metrics), so host time and
# GPU time separate. (c0) is (c) with SGLang's own kernels (SGLANG_INDEXCACHE_TOPK=upstream,
# SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0): only the hooks and the check differ from (d). Order
# c, d, c0, d, c: a cut-short budget still leaves one server of each.
ag() {  # ag NAME ESTIMATE CONFIG [ENV=VALUE...]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $S/$name \
    --shape flash-12 --model-path $FL/model --trace $FL/trace.json --configs $cfg --concurrency 16 \
    --forward-pass-metrics --prefill-graphs sglang
}
ag fl-c1 310 c   # first: pays the kernel JIT the tracked cache lacks
ag fl-d1 215 d
ag fl-c0 220 c SGLANG_INDEXCACHE_TOPK=upstream SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0
ag fl-d2 215 d
ag fl-c2 220 c
# the budget's last call: one more server of (c0), (c), (d)
ag fl-c0b 165 c SGLANG_INDEXCACHE_TOPK=upstream SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0
ag fl-c3 165 c
ag fl-d3 165 d
finish
