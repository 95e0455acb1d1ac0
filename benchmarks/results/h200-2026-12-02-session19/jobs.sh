#!/usr/bin/env bash
# Session 19's device jobs on one H200: `bash benchmarks/results/h200-2026-12-02-session19/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh.
S=/tmp/s19; . scripts/device_queue.sh "$1" "${2:-}"

# SGLang's default breakable prefill graphs under the GPU tests (glm-5.2-8l): counted, key-checked,
# prompt log-probabilities against upstream native sharing; never run to the end before
job gpu-bcg 330 $G test tests/test_gpu.py -k breakable_prefill

# issue 14, the decode gap: session 18's (c) decoded at batch 1 about 0.8 ms a step slower than
# (a) and (d), flat over context. Batch 1 at 64K, the agentic servers' flags, unit indexer
# weights; 24 steps profiled with Python stacks (host time per step, by function).
# dg-on: SGLang's prefill graphs on, as the agentic servers ran: (c), (d), and (i) (dsa with the
# pattern as indexer_types: the model config indexcache installs, without our backend or hooks).
# dg-off: the same with prefill graphs off, (d) first. dg-r0: (c) with the paged route off.
AGF="--enable-metrics --enable-cache-report --enable-request-time-stats-logging"
dg() {  # dg NAME ESTIMATE PREFILL_GRAPHS CONFIGS... [-- more bench run flags]
  local name=$1 est=$2 graphs=$3; shift 3
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench run --out $S/$name --phase decode \
    --num-layers 12 --decode-batch 1 --decode-len 65536 --decode-steps 576 --decode-short 64 --decode-repeats 3 \
    --profile-steps 24 --profile-stack --prefill-graphs $graphs --server-args "$AGF" --configs "$@"
}
dg dg-on 300 sglang c d i
dg dg-off 160 off d c
dg dg-r0 100 sglang c --server-env SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0
dg dg-on2 300 sglang d i c   # dg-on again, another order: how far do batch-1 decode rates move
# the rates above move from server to server (340 to 490 tok/s) whatever the config: the
# same three pinned to 8 cores (taskset, inherited by every server process), with the host's
# CPU and NUMA layout recorded
job topo 10 bash -c "lscpu > $S/logs/lscpu.txt; nvidia-smi topo -m > $S/logs/topo.txt 2>&1; numactl -H >> $S/logs/topo.txt 2>&1; true"
G="taskset -c 0-7 $G" dg dg-pin 300 sglang c d i
finish
