#!/usr/bin/env bash
# Session 17's device jobs on one H200: `bash benchmarks/results/h200-2026-12-02-session17/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue (done-markers, estimates, servers a
# stopped job left, the tar back) is scripts/device_queue.sh.
S=/tmp/s17; . scripts/device_queue.sh "$1" "${2:-}"

# issue 14: agentic sessions as users launch the server, with SGLang's default breakable prefill
# CUDA graphs (--prefill-graphs sglang; every earlier agentic run had them off). flash-12, session
# 11's trace (sha256 ea55926f... on this host), unit indexer weights, concurrency 1, one session,
# three runs per server from a flushed cache (--repeats 3: medians, and (c) over (d) at its worst
# and best pairing). (c) indexcache FSSSFSSSFSSS first (it pays the kernel JIT), then (d) upstream
# native sharing, then (a) dsa all Full.
AG=$S/ag
job ag-prep 60 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('flash-12', '$AG/model')\" \
  && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json && sha256sum $AG/trace.json"
agentic() {  # agentic NAME ESTIMATE CONFIG [VAR=VALUE ...]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $AG --shape flash-12 \
    --model-path $AG/model --trace $AG/trace.json --configs $cfg --concurrency ${LEVELS:-1} --min-sessions 1 \
    --repeats ${REPEATS:-3} --prefill-graphs sglang
}
agentic ag-c 300 c
# the kernels compiled so far, for the next session's bundle (stays on the host; its size is logged)
job jit-pack 40 bash -c "$G jit-pack /tmp/jit-cache.tgz && ls -la /tmp/jit-cache.tgz"
agentic ag-d 200 d
agentic ag-a 200 a

# SGLang's default prefill graphs under the GPU tests: counted and key-checked
# (..._are_counted), and prompt log-probabilities equal to upstream native sharing
# (..._equal_upstream), which has never run
job gpu-bcg 330 $G test tests/test_gpu.py -k breakable_prefill
finish
