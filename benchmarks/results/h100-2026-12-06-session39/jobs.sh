#!/usr/bin/env bash
# What session 39 ran (one H100, 2026-12-06): benchmarks/jobs/fl-stages.sh with the 128K trace at
# concurrency 1 (CONC=1: two sessions, runs fl-conc1-*), servers d c d c d. The last staging call ran
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s39 && mkdir -p $S && cp -r .bundle-fl $S/fl && \
#     CONC=1 ORDER="d c d c d c d c" S=$S bash benchmarks/jobs/fl-stages.sh 590 install
# (install, fl-conc1-d1, fl-conc1-c1; fl-conc1-d2 did not fit the 124 s left), then
#   CONC=1 ORDER="d c d c d c d c" S=/tmp/s39 bash benchmarks/jobs/fl-stages.sh 535   (d2, c2, d3)
# after which 113 s of device time were left, less than a server (133 to 147 s here).
# This file replays those calls: bash benchmarks/results/h100-2026-12-06-session39/jobs.sh CALL_SECONDS [install]
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
CONC=1 ORDER="d c d c d c d c" S=${S:-/tmp/s39} exec bash benchmarks/jobs/fl-stages.sh "$@"
