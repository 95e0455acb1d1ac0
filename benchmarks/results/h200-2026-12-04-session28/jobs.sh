#!/usr/bin/env bash
# Session 28's device jobs on one H200: `bash benchmarks/results/h200-2026-12-04-session28/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace are session 27's (carried in .bundle-fl, copied to $S/fl by the staging call; trace
# sha256 821ea80f), made on the project's CPU machine:
#   python -c "from sglang_indexcache.bench import common; common.make_model('flash-12', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s28; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl

# Issue 14's first target on flash-12, (c) indexcache FSSSFSSSFSSS against (d) upstream native
# sharing at the same pattern, with two servers each in the order c, d, d, c (session 27 had one
# server each: >= 96K median 0.906 at concurrency 16, and session 18's 0.90 at concurrency 1 is
# from before the v2 top-k). Concurrency 1 (2 sessions) and 16 (16 sessions) on every server, so
# `bench merge` joins the four. Then, if the time allows, (f) and (a) at concurrency 1.
ag() {  # ag NAME ESTIMATE CONFIG CONCURRENCY...
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $S/$name --shape flash-12 \
    --model-path $FL/model --trace $FL/trace.json --configs $cfg --concurrency "$@" --min-sessions 2 \
    --prefill-graphs sglang
}
ag fl-c1 320 c 1 16   # first: pays the kernel JIT the tracked cache lacks
ag fl-d1 255 d 1 16
ag fl-d2 255 d 1 16
ag fl-c2 255 c 1 16
ag fl-f1 175 f 1
ag fl-a1 175 a 1
finish
