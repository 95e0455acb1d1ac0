#!/usr/bin/env bash
# The one-GPU tests (`-m gpu`: tests/test_gpu.py, tests/test_gpu_serving.py) as queue jobs, each
# small enough for one call of the device tool: a job the call's end stops runs again whole next
# call, and a pytest process keeps its module's servers only while it lives, so each module is
# cut into `-k` parts where its servers change, the last part of each being the rest of it.
# Session 44 (an H100): about 50 s a server start after the machine's first (which pays about
# 200 s of kernel JIT); one job for test_gpu.py's first four tests (eight servers) was stopped by
# the call's end at 491 s on a bare machine, three passed, inside the fourth. The estimates below
# count the servers each part starts (two live at once), the first part the JIT too.
#
#   S=/tmp/sNN bash benchmarks/jobs/gpu-tests.sh CALL_SECONDS [install]
#
# Each job's pytest output is in $S/logs/NAME.txt; tests/test_gpu_parallel.py needs two GPUs
# and skips on one. All parts take about 2,450 s, more than a session's device time: a later
# session, on a fresh machine, marks the parts an earlier one passed done before its first call
# (`mkdir -p $S/done && touch $S/done/gpu-a1 ...`; session 44 passed the parts' tests named in
# benchmarks/results/h100-2026-12-06-session44/README.md).
S=${S:-/tmp/s44}; . scripts/device_queue.sh "$1" "${2:-}"
T=(test -x)
parts() {  # parts MODULE NAME ESTIMATE EXPR ... NAME ESTIMATE: a job per `-k EXPR`, the last the rest
  local module=$1 taken=""; shift
  while [ $# -gt 2 ]; do
    job "$1" "$2" $G "${T[@]}" "$module" -k "$3"
    taken="${taken:+$taken or }$3"; shift 3
  done
  job "$1" "$2" $G "${T[@]}" "$module" -k "not ($taken)"
}
parts tests/test_gpu.py \
  gpu-a1 360 "all_full or declared_schedule" \
  gpu-a2 260 "native_sharing or v2_extend" \
  gpu-b 330 "short_extends" \
  gpu-c1 300 "cuda_graph_off or breakable or radix_hit" \
  gpu-c2 330
parts tests/test_gpu_serving.py \
  gpu-serving-a 330 "switchable or leading" \
  gpu-serving-b 240 "mtp or hierarchical" \
  gpu-serving-c 300
finish
