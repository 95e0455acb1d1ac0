#!/usr/bin/env bash
# What session 44 ran (2026-12-06, one H100, got at 15:50 UTC after three calls that got no
# machine): the one-GPU tests, no benchmark. The calls, as sent (after 22 staging calls):
#   cp .bundle-p22/* /tmp/bundle/ && S=/tmp/s44 bash benchmarks/jobs/gpu-tests.sh 590 install
#     (gpu-tests.sh then began with one job, gpu-core-a, for test_gpu.py's first four tests,
#     `-k "all_full or declared_schedule or native_sharing or v2_extend"`; the call's end stopped
#     it at 491 s, three passed, inside the fourth: logs/gpu-core-a.txt)
#   timeout 545 bash scripts/gpu_host.sh test -x tests/test_gpu.py -k "v2_extend or (short_extends and bf16-v2-paged) or fp8_kv"   (logs/gpu-part2.txt)
#   timeout 280 bash scripts/gpu_host.sh test tests/test_gpu.py -k "cuda_graph_off or breakable"   (logs/gpu-part3.txt)
#   timeout 122 bash scripts/gpu_host.sh test tests/test_gpu.py -k "replay_counters"   (logs/gpu-part4.txt: failed)
# gpu-tests.sh now holds the parts these measurements fit into a call; this file runs it:
#   bash benchmarks/results/h100-2026-12-06-session44/jobs.sh CALL_SECONDS [install]
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
S=${S:-/tmp/s44} exec bash benchmarks/jobs/gpu-tests.sh "$@"
