#!/usr/bin/env bash
# What session 41 ran (2026-12-06, two H100s one after the other): benchmarks/jobs/fl-stages.sh with
# the 128K trace at concurrency 1 (CONC=1: two sessions, runs fl-conc1-*), ORDER "d c d c d c".
# First machine (first-machine/): the last staging call ran
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s41 && mkdir -p $S && cp -r .bundle-fl $S/fl && \
#     CONC=1 ORDER="d c d c d c" S=$S bash benchmarks/jobs/fl-stages.sh 590 install
# (install, fl-conc1-d1, fl-conc1-c1; d2 did not fit the 30 s left). The next call, sent at once,
# found a fresh machine ("no install in /tmp/sg", rc 3 in 0.2 s): the first had been given back.
# Second machine (second-machine/): staged again, then
#   ... S=/tmp/s41b ... CONC=1 ORDER="d c d c d c" S=$S bash benchmarks/jobs/fl-stages.sh 590 install  (d1, c1, d2)
#   CONC=1 ORDER="d c d c d c" S=/tmp/s41b bash benchmarks/jobs/fl-stages.sh 310                      (c2, d3)
# after which 93 s of device time were left, less than a server (111 to 119 s there).
# This file replays those calls: bash benchmarks/results/h100-2026-12-06-session41/jobs.sh CALL_SECONDS [install]
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
CONC=1 ORDER="d c d c d c" S=${S:-/tmp/s41} exec bash benchmarks/jobs/fl-stages.sh "$@"
