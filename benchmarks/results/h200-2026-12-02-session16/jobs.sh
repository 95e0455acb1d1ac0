#!/usr/bin/env bash
# Session 16's device jobs on one H200: `bash benchmarks/results/h200-2026-12-02-session16/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue (done-markers, estimates, servers a
# stopped job left, the tar back) is scripts/device_queue.sh.
S=/tmp/s16; . scripts/device_queue.sh "$1" "${2:-}"

# SGLang's default breakable prefill CUDA graphs, counted and key-checked by the backend
# (backend/hooks.py register_prefill_graphs): the GPU test, one indexcache server and upstream
# native sharing on the 8-layer GLM-5.2 shape (the first machine's
# call ran out of time at its second server; that machine was given back before the next call)
job gpu-bcg 250 $G test tests/test_gpu.py -k breakable_prefill

# issue 14: agentic sessions with SGLang's default prefill graphs (--prefill-graphs sglang, the
# bench's default since session 15; every earlier run had them off). The first call showed that
# SGLang captures them up to the chunked-prefill size (58 shapes to 8,192 tokens in 190 s for
# 8 layers on a fresh machine), so the 12-layer flash-12 shape, not the 78-layer one: session
# 11's trace (sha256 ea55926f...), unit indexer weights, concurrency 1, one session, (c)
# indexcache FSSSFSSSFSSS, then (a) dsa all Full
AG=$S/ag
job ag-prep 60 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('flash-12', '$AG/model')\" \
  && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json && sha256sum $AG/trace.json"
agentic() {  # agentic NAME ESTIMATE CONFIG [VAR=VALUE ...]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $AG --shape flash-12 \
    --model-path $AG/model --trace $AG/trace.json --configs $cfg --concurrency ${LEVELS:-1} --min-sessions 1 \
    --prefill-graphs sglang
}
agentic ag-c 360 c
agentic ag-a 240 a

# the kernels compiled so far, for the next session's bundle (brought back by a separate call)
job jit-pack 40 $G jit-pack /tmp/jit-cache.tgz
finish
