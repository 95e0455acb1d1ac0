#!/usr/bin/env bash
# Session 31's device jobs on one H200: `bash benchmarks/results/h200-2026-12-04-session31/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace are session 27's (carried in .bundle-fl, copied to $S/fl by the staging call; trace
# sha256 821ea80f). The MTP jobs give no --model-path: `bench agentic --mtp --shape flash-12`
# writes the same shape with one NextN layer (the draft EAGLE needs) in its --out folder.
S=/tmp/s31; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl

# Issue 14's first target (indexcache / upstream native sharing >= 0.99 on every figure):
# - flash-12 at concurrency 16, two more servers each of (c) indexcache FSSSFSSSFSSS and (d) dsa
#   with upstream native sharing, and one of (c0) = (c) with SGLang's own kernels, every forward's
#   GPU span published (sessions 28 and 30: (c) 0.965 and 0.982 of (d), by server noise of ~3 %);
# - the same workload under MTP (EAGLE over the NextN layer, the speculative flags users launch
#   with), never run agentic before: (c) and (d), one server each.
ag() {  # ag NAME ESTIMATE CONFIG [bench flags...] -- [ENV=VALUE...]
  local name=$1 est=$2 cfg=$3; shift 3
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $S/$name \
    --shape flash-12 --trace $FL/trace.json --configs $cfg --concurrency 16 --prefill-graphs sglang "${flags[@]}"
}
FPM=(--model-path $FL/model --forward-pass-metrics)
ag fl-c1 215 c "${FPM[@]}"   # first: pays the kernel JIT the tracked cache lacks
ag fl-d1 165 d "${FPM[@]}"
ag mtp-c 280 c --mtp         # first MTP server: the draft's kernels and graphs
ag mtp-d 210 d --mtp
ag fl-c0 165 c "${FPM[@]}" -- SGLANG_INDEXCACHE_TOPK=upstream SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0
ag fl-d2 165 d "${FPM[@]}"
ag fl-c2 175 c "${FPM[@]}"
# spares, should the budget allow
ag fl-d3 165 d "${FPM[@]}"
ag fl-c3 175 c "${FPM[@]}"
finish
