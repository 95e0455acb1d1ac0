#!/usr/bin/env bash
# What session 38 ran (one H100, 2026-12-05): benchmarks/jobs/fl-stages.sh with the 32K trace and
# three servers per configuration, d c d c d c. The last staging call ran
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s38 && mkdir -p $S && cp -r .bundle-fl $S/fl && \
#     TRACE=trace-32k.json ORDER="d c d c d" S=$S bash benchmarks/jobs/fl-stages.sh 590 install
# (fl32-d1, fl32-c1, fl32-d2; fl32-c2 did not fit the call's 126 s left), then
#   TRACE=trace-32k.json ORDER="d c d c d" S=/tmp/s38 bash benchmarks/jobs/fl-stages.sh 590   (fl32-c2, fl32-d3)
# and, with 249 s of device time left and servers at about 90 s each on this host,
#   TRACE=trace-32k.json ORDER="d c d c d c" S=/tmp/s38 bash benchmarks/jobs/fl-stages.sh 240  (fl32-c3)
# This file replays those calls: bash benchmarks/results/h100-2026-12-05-session38/jobs.sh CALL_SECONDS [install]
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
TRACE=trace-32k.json ORDER="d c d c d c" S=${S:-/tmp/s38} exec bash benchmarks/jobs/fl-stages.sh "$@"
