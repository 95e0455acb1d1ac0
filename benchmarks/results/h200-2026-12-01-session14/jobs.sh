#!/usr/bin/env bash
# Session 14's device jobs on one H200: `bash benchmarks/results/h200-2026-12-01-session14/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue (done-markers, estimates, servers a
# stopped job left, the tar back) is scripts/device_queue.sh.
S=/tmp/s14; . scripts/device_queue.sh "$1" "${2:-}"

# issues 14 and 20: agentic sessions, flash-12, session 11's 16-session trace (sha256 ea55926f...),
# unit indexer weights, concurrency 1 (2 sessions) and 16 (16 sessions), one server per config:
# (a) dsa all Full; (c) indexcache 1/4 as before issue 20 (SGLang's top-k, paged route off);
# (p) the same with v2 top-k + paged extends <= 128 (after); (d) dsa native sharing, same pattern
AG=$S/ag
job ag-prep 90 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('flash-12', '$AG/model')\" \
  && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json"
agentic() {  # agentic NAME ESTIMATE CONFIG [VAR=VALUE ...]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $AG --shape flash-12 \
    --model-path $AG/model --trace $AG/trace.json --configs $cfg --concurrency ${LEVELS:-1 16} --paged-rows 128
}
# (the first call's install left 338 s: ag-c paid the kernel JIT, its probe, then was stopped)
agentic ag-p 270 p
agentic ag-c 270 c SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0
# (a) got the last 372 s of device time: concurrency 16 alone (the level no session had run)
LEVELS=16 agentic ag-a16 240 a
agentic ag-a 330 a
LEVELS=1 agentic ag-a1 200 a   # if the device time left is short of both levels
# issue 20: v2 top-k in servers against SGLang's own top-k / upstream native sharing (glm-5.2-8l)
job test-v2 330 $G test tests/test_gpu.py -k "v2_extend or bf16-v2"
agentic ag-d 330 d
finish
