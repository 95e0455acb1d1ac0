#!/usr/bin/env bash
# Session 27's device jobs on one H200: `bash benchmarks/results/h200-2026-12-04-session27/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace were made on the project's CPU machine and carried in .bundle-fl (the staging call
# copies it to $S/fl); the trace's conversations are sessions 20 to 26's (sha256 821ea80f):
#   python -c "from sglang_indexcache.bench import common; common.make_model('flash-12', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s27; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl

# Issue 14's matrix on flash-12 at concurrency 4 and 16 with today's kernels (v2-paged top-k, the
# paged route): (c) indexcache FSSSFSSSFSSS and (d) upstream native sharing at the same pattern
# (session 18, before v2, had (c) over (d) 0.86 to 0.95 at 4 and 16), (e) the lower retention
# and (f) the searched shape (never run at 4 and 16), then (a) dsa all Full. One server each,
# one --out each (joined by `bench merge` on the CPU machine).
ag() {  # ag NAME ESTIMATE CONFIG
  job $1 $2 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $S/$1 --shape flash-12 \
    --model-path $FL/model --trace $FL/trace.json --configs $3 --concurrency 4 16 --min-sessions 4 \
    --prefill-graphs sglang
}
ag fl-c 320 c   # first: pays the kernel JIT the tracked cache lacks
ag fl-d 250 d
ag fl-e 250 e
ag fl-f 250 f
ag fl-a 250 a
ag fl-d2 250 d
ag fl-c2 250 c
finish
