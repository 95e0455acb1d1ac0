#!/usr/bin/env bash
# Session 15's device jobs on one H200: `bash benchmarks/results/h200-2026-12-01-session15/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue (done-markers, estimates, servers a
# stopped job left, the tar back) is scripts/device_queue.sh.
S=/tmp/s15; . scripts/device_queue.sh "$1" "${2:-}"

# issue 14: agentic sessions on the 78-layer shape (one TP-8 rank of GLM-5.2, its declared
# schedule, 21 Full), session 11's 16-session trace (the shapes share one tokenizer, so the same
# sha256 ea55926f...), unit indexer weights, concurrency 1 (one session), one server per config:
# (c) indexcache, declared schedule; (a) dsa all Full; (d) dsa native sharing, same pattern;
# (e) indexcache, every other declared Full layer (11 of 78)
AG=$S/ag
job ag-prep 90 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', '$AG/model')\" \
  && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json && sha256sum $AG/trace.json"
agentic() {  # agentic NAME ESTIMATE CONFIG [VAR=VALUE ...]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $AG --shape glm-5.2-tp8 \
    --model-path $AG/model --trace $AG/trace.json --configs $cfg --concurrency ${LEVELS:-1} --min-sessions 1
}
agentic ag-c 480 c     # the first server on the machine: about 200 s of kernel JIT
# the JIT caches' size (could they travel with the bundle?)
job jit-du 5 bash -c "du -sh ~/.cache/* ~/.deep_gemm* ~/.triton* /tmp/torchinductor_* 2>/dev/null; true"
agentic ag-a 380 a
agentic ag-d 330 d
agentic ag-e 260 e
finish
