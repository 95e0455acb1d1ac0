#!/usr/bin/env bash
# Session 13's device jobs on one H200: `bash benchmarks/results/h200-2026-12-01-session13/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue (done-markers, estimates, servers a
# stopped job left, the tar back) is scripts/device_queue.sh.
S=/tmp/s13; . scripts/device_queue.sh "$1" "${2:-}"

# issue 20: the paged extend route (N = 128) in servers against upstream native sharing:
# bf16 alone (SGLang's legacy transform) and with v2, then FP8 KV (RAGGED)
job test-route-bf16 360 $G test tests/test_gpu.py -k "short_extends and bf16"
job test-route-fp8 240 $G test tests/test_gpu.py -k "short_extends and fp8"
# issue 20: one turn on 123K cached tokens, unit indexer weights, side by side in one results.json:
# (a) dsa all Full; (n) indexcache all Full and (p) 1/4, both v2 top-k + paged extends <= 128
TURN="bench turn --out $S/turn --new 1 64 128 2048 --repeats 3 --paged-rows 128 --server-env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit"
job turn-a 300 $G $TURN --configs a     # the first flash-12 server pays its kernel JIT
job turn-n 110 $G $TURN --configs n
job turn-p 110 $G $TURN --configs p
# issues 20 and 14: agentic before/after, flash-12, session 11's 16-session trace, unit indexer
# weights: (c) indexcache 1/4 as session 11 ran it, (p) the same with v2 + paged extends <= 128
AG=$S/ag
job ag-prep 90 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('flash-12', '$AG/model')\" \
  && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json"
for cfg in c p n a; do
  job ag-$cfg 170 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $AG --shape flash-12 \
    --model-path $AG/model --trace $AG/trace.json --configs $cfg --concurrency 1 --paged-rows 128
done
finish
