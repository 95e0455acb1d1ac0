#!/usr/bin/env bash
# What session 40 ran (one H200, 2026-12-06): benchmarks/jobs/fl-stages.sh with the 128K trace at
# concurrency 16 (runs fl-*), ORDER="d c d c d c". The last staging call ran
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s40 && mkdir -p $S && cp -r .bundle-fl $S/fl && \
#     TRACE=trace.json ORDER="d c d c d c" S=$S bash benchmarks/jobs/fl-stages.sh 590 install
# (install, fl-d1, fl-c1: the call's end stopped fl-c1 4 s after its results were written, in the
# server's shutdown, so the queue did not mark it done), then
#   TRACE=trace.json ORDER="d c d c d c" S=/tmp/s40 bash benchmarks/jobs/fl-stages.sh 548   (fl-c1 again, fl-d2)
# after which 174 s of device time were left, less than a server (187 s here). Call 1's fl-c1 is
# fl-c1/ here, call 2's is fl-c2/ (README).
# fl-stages.sh's estimates for this trace have since gone from 170 s to 240 (first) and 190 s.
# This file replays those calls: bash benchmarks/results/h200-2026-12-06-session40/jobs.sh CALL_SECONDS [install]
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
TRACE=trace.json ORDER="d c d c d c" S=${S:-/tmp/s40} exec bash benchmarks/jobs/fl-stages.sh "$@"
