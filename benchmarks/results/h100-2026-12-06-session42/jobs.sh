#!/usr/bin/env bash
# What session 42 ran (2026-12-06, one H100): benchmarks/jobs/mtp-balanced.sh (fl-stages.sh with
# MTP=1, ORDER "d c d c d c") on the 32K trace at concurrency 16 (runs mtp32-*) and, in the calls'
# remaining time, on the 128K trace at concurrency 1 (CONC=1, ORDER "d c d c": runs mtp-conc1-*).
# The calls, as sent (each a device call of at most 600 s; the queue keeps $S across calls):
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s42 && mkdir -p $S && cp -r .bundle-fl $S/fl && \
#     TRACE=trace-32k.json S=$S bash benchmarks/jobs/mtp-balanced.sh 590 install          (install, d1, c1)
#   TRACE=trace-32k.json S=/tmp/s42 bash benchmarks/jobs/mtp-balanced.sh 590               (d2, c2, d3)
#   T0=$(date +%s); TRACE=trace-32k.json S=/tmp/s42 bash benchmarks/jobs/mtp-balanced.sh 270 >/dev/null; \
#     CONC=1 ORDER="d c d c" S=/tmp/s42 bash benchmarks/jobs/mtp-balanced.sh $((585 - $(date +%s) + T0))
#                                          (c3 did not fit its 270 s less the queue's 35 s; conc1 d1, c1, d2)
#   T0=$(date +%s); CONC=1 ORDER="d c d c" S=/tmp/s42 bash benchmarks/jobs/mtp-balanced.sh 225 >/dev/null; \
#     TRACE=trace-32k.json S=/tmp/s42 bash benchmarks/jobs/mtp-balanced.sh $((515 - $(date +%s) + T0))
#                                          (conc1 c2 did not fit; mtp32-c3)
#   CONC=1 ORDER="d c d c" S=/tmp/s42 bash benchmarks/jobs/mtp-balanced.sh 390; \
#     timeout 261 bash scripts/gpu_host.sh test tests/test_gpu.py -x -q        (conc1 c2; 2 GPU tests)
# This file replays one configuration's queue: bash benchmarks/results/h100-2026-12-06-session42/jobs.sh CALL_SECONDS [install]
# (TRACE=trace-32k.json for the concurrency-16 runs, CONC=1 ORDER="d c d c" for the others).
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
S=${S:-/tmp/s42} exec bash benchmarks/jobs/mtp-balanced.sh "$@"
