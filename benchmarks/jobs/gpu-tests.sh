#!/usr/bin/env bash
# The one-GPU tests (`-m gpu`: tests/test_gpu.py, tests/test_gpu_serving.py) as queue jobs, each
# small enough for one call of the device tool: a job the call's end stops runs again whole next
# call, and a pytest process keeps its module's servers only while it lives, so test_gpu.py is
# cut in three where its servers change. Session 42 ran test_gpu.py in one call: its first two tests
# (four servers, the first paying the machine's kernel JIT) took 260 s; the estimates below are
# guesses from that (two servers live at once: part a starts 8, b 9, c 11).
#
#   S=/tmp/sNN bash benchmarks/jobs/gpu-tests.sh CALL_SECONDS [install]
#
# Each job's pytest output is in $S/logs/NAME.txt; tests/test_gpu_parallel.py needs two GPUs
# and skips here.
S=${S:-/tmp/s44}; . scripts/device_queue.sh "$1" "${2:-}"
T=(test -x)
A="all_full or declared_schedule or native_sharing or v2_extend"
B="short_extends"
job gpu-core-a 400 $G "${T[@]}" tests/test_gpu.py -k "$A"
job gpu-core-b 300 $G "${T[@]}" tests/test_gpu.py -k "$B"
job gpu-core-c 360 $G "${T[@]}" tests/test_gpu.py -k "not ($A or $B)"
job gpu-serving 420 $G "${T[@]}" tests/test_gpu_serving.py
finish
