#!/usr/bin/env bash
# Session 12's device jobs on one H200, as they ran: `bash jobs.sh CALL_SECONDS [install]`, once
# per device call (session 11's queue, one GPU). State lives in /tmp/s12 on the machine (kept
# while it is warm): a job with a done-marker is skipped, a job is started only if its estimate
# fits in the call's time left, and a job stopped by the call's end is run again whole next call.
# Each call returns /tmp/s12 (models and profiler dumps left out) as a split tar under $OUT.
set -u
cd "$(dirname "$0")/../../.."
G=${G:-bash scripts/gpu_host.sh}
OUT=${OUT:?}
S=${S:-/tmp/s12}
mkdir -p $S/done $S/logs
END=$((SECONDS + ${1:?call seconds} - 35))   # 35 s to pack and return
if [ "${2:-}" = install ]; then
  $G install /tmp/bundle > $S/logs/install.txt 2>&1; echo "install rc=$?"; tail -4 $S/logs/install.txt
  nvidia-smi > $S/logs/nvidia-smi.txt 2>&1
fi

job() {  # job NAME ESTIMATE_S command...: run unless done or it cannot fit
  local name=$1 est=$2; shift 2
  [ -e $S/done/$name ] && return 0
  local left=$((END - SECONDS))
  if [ $est -gt $left ]; then echo "$name: ${left}s left < ${est}s, next call" >> $S/logs/queue.txt; return 0; fi
  echo "$name start ($(date +%T), ${left}s left)" >> $S/logs/queue.txt
  local t0=$SECONDS
  timeout $left "$@" > $S/logs/$name.txt 2>&1
  local rc=$?
  echo "$name rc=$rc in $((SECONDS - t0))s" >> $S/logs/queue.txt
  # added after the run: a job stopped by `timeout` left its servers holding the GPU, and the
  # next job's server found 36 of 139 GB free (logs/test-paged-bf16.txt); scripts/device_queue.sh,
  # which later sessions source, kills the servers a job left
  [ $rc = 0 ] && touch $S/done/$name
}

# issue 20: the paged extend route and the v2 top-k against SGLang's kernels, no server
job test-kernels 100 $G test tests/test_paged_extend.py tests/test_topk.py -k "deepgemm or v2_select"
# issue 20: one turn on a 123K cached prefix, realistic indexer scores (unit indexer weights), a server per config
TURN="bench turn --out $S/turn --new 1 64 512 2048 8192 --repeats 3 --server-env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit"
job turn-a 300 $G $TURN --configs a      # the first server on this machine pays the kernel JIT
for cfg in n p m; do job turn-$cfg 130 $G $TURN --configs $cfg; done
# the route in a server against upstream (bf16 KV: PAGED; FP8 KV: RAGGED), then the v2 and switchable tests
job test-paged-bf16 300 $G test tests/test_gpu.py -k "short_extends and bf16"
job test-paged-fp8 200 $G test tests/test_gpu.py -k "short_extends and fp8"
job test-v2 200 $G test tests/test_gpu.py -k "v2_extend"
job test-switchable 200 $G test tests/test_gpu.py -k "switchable"
cat $S/logs/queue.txt
for f in $S/logs/*.txt; do case $f in *queue*|*install*|*nvidia-smi*) continue;; esac; echo "== $f"; tail -4 "$f"; done
tar czf $S.tgz -C /tmp --exclude='s12/*/model' --exclude='*/profiles' --exclude='*.trace.json*' s12
split -b 15M $S.tgz $OUT/s12.tgz.part-
ls -la $OUT
