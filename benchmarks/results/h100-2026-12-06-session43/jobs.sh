#!/usr/bin/env bash
# What session 43 ran (2026-12-06, one H100, got at 13:42 UTC after fifteen calls that got no machine):
# benchmarks/jobs/mtp-balanced.sh (fl-stages.sh with MTP=1) on the 32K trace at concurrency 16,
# ORDER "c d c d c d" (the reverse of session 42's), runs mtp32-*. The calls, as sent (the queue
# keeps $S across calls):
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s43 && mkdir -p $S && cp -r .bundle-fl $S/fl && \
#     TRACE=trace-32k.json ORDER="c d c d c d" S=$S bash benchmarks/jobs/mtp-balanced.sh 590 install   (install, c1, d1)
#   S=/tmp/s43 TRACE=trace-32k.json ORDER="c d c d c d" bash benchmarks/jobs/mtp-balanced.sh 290          (c2)
#   then, with 159 s of device time left, d2 outside the queue (whose 225-s estimate did not fit):
#   S=/tmp/s43; mkdir -p $S/mtp32-d2; timeout 138 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit \
#     bash scripts/gpu_host.sh bench agentic --out $S/mtp32-d2 --shape flash-12 --trace $S/fl/trace-32k.json \
#     --concurrency 16 --prefill-graphs sglang --forward-pass-metrics --py-spy --mtp --configs d \
#     > $S/logs/mtp32-d2.txt 2>&1; tar czf $OUT/d2.tgz -C $S mtp32-d2 logs/mtp32-d2.txt   (126 s)
# This file replays the queue: bash benchmarks/results/h100-2026-12-06-session43/jobs.sh CALL_SECONDS [install]
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
S=${S:-/tmp/s43} TRACE=${TRACE:-trace-32k.json} ORDER=${ORDER:-c d c d c d} exec bash benchmarks/jobs/mtp-balanced.sh "$@"
