#!/usr/bin/env bash
# Issue 14's open question at concurrency 16, for the next session with one H200: what makes
# (c)'s decode forwards slower than (d)'s. Sessions 30 and 31 (read again in session 32:
# benchmarks/results/h200-2026-12-04-session31/README.md, last section): each (c) server's
# decode-only forwards, the same graphs everywhere, took 1.4 to 11 % longer than those of the
# (d) server beside it; (c0) (= (c) with SGLANG_INDEXCACHE_TOPK=upstream and
# SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0) lay between its (d) neighbours; (c) always ran first.
# This queue separates the top-k setting in a balanced order, each replay sampled by py-spy,
# every forward's GPU span recorded, the GPU's clocks logged (device_queue.sh):
#   c: the defaults; u: only the top-k upstream (config u); d: dsa with upstream native sharing.
# Afterwards: `bash benchmarks/jobs/report.sh DIR fl=fl-c1,fl-d1,fl-u1,fl-d2,fl-c2,fl-u2` (merge, report, spans, pyspy;
# written as c-host-cost-report.sh, renamed in session 33).
#
#   S=/tmp/s33 bash benchmarks/jobs/c-host-cost.sh CALL_SECONDS [install]
#
# The model and trace: made on the CPU machine and carried in .bundle-fl (the staging call copies
# it to $S/fl); the trace is session 27's (its "sha256" field 821ea80f):
#   python -c "from sglang_indexcache.bench import common; common.make_model('flash-12', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
# Device time: staging 42 parts of 30 MiB took about 225 s of the 1,800; the servers below need
# about 1,365. The checkout without benchmarks/results/ is 5.5 MB (34.1 MB with it), so with
# benchmarks/results/ moved out of the work tree during the device calls (nothing here reads it),
# parts of 56 MiB fit (about 23 calls instead of 43). Untried: if the device tool will not send a
# tree whose tracked files are missing, put the folder back and stage 30 MiB parts.
S=${S:-/tmp/s33}; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl

ag() {  # ag NAME ESTIMATE CONFIG [bench flags...] -- [ENV=VALUE...]
  local name=$1 est=$2 cfg=$3; shift 3
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  job $name $est env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit "$@" $G bench agentic --out $S/$name \
    --shape flash-12 --trace $FL/trace.json --configs $cfg --concurrency 16 --prefill-graphs sglang "${flags[@]}"
}
F=(--model-path $FL/model --forward-pass-metrics --py-spy)
# The first server of sessions 28, 30 and 31 was always (c), to pay the kernel JIT; session 31's
# was its slowest server and the only one whose loop left the GPU waiting (`bench spans`, host
# gap 0.57 ms against 0.09 to 0.19). Here a (d) server goes first and is reported apart; then
# c d u u d c, so that a drift over the session weighs on every configuration alike. The paged
# route is not a setting to separate at this concurrency: it served 1 of (c)'s 222 prefill
# forwards in session 31 (<= 128 new tokens); its server is a spare.
ag fl-w1 300 d "${F[@]}"   # first: pays SGLang's kernel JIT the tracked cache lacks
ag fl-c1 240 c "${F[@]}"   # the v2-paged top-k's JIT, at start-up
# Session 33: estimates from session 31's queue (fl-d1 took 200 s; fl-d2, given 178 s, was
# stopped), and so one (u) server in the middle, c d u d c, which a linear drift over the
# session weighs on alike; the second (u) is the first spare.
ag fl-d1 210 d "${F[@]}"
ag fl-u1 210 u "${F[@]}"
ag fl-d2 210 d "${F[@]}"
ag fl-c2 210 c "${F[@]}"
# after the last server, ahead of the spares: the kernel cache after a (c) server: benchmarks/jit/ (session 21's) lacks the v2-paged top-k
# (indexcache_paged_topk, session 26), which every fresh host compiled at the first (c) start
job jit-pack 30 $G jit-pack $S/jit-cache.tgz
# spares, should the budget allow: (u) again; issue 14's (a) at concurrency 1; (c) with the paged route off;
# the MTP pair again, (d) first this time and with the loop recorded (session 31's mtp-c had its
# longer TTFT through the whole replay; `--mtp --shape` writes the shape with a NextN layer)
ag fl-u2 210 u "${F[@]}"
ag fl-a-1 200 a "${F[@]}" --concurrency 1
ag fl-r1 175 c "${F[@]}" -- SGLANG_INDEXCACHE_PAGED_EXTEND_ROWS=0
ag mtp-d1 260 d --mtp --forward-pass-metrics --py-spy
ag mtp-c1 230 c --mtp --forward-pass-metrics --py-spy
finish
