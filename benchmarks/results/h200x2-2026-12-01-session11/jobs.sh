#!/usr/bin/env bash
# Session 11's device jobs on nvidia-h200-x2, as they ran: `bash jobs.sh CALL_SECONDS [install]`,
# once per device call. GPU 0 and GPU 1 each work through their queue side by side; state
# lives in /tmp/s11 on the machine (kept while it is warm), so a later call picks up where the
# last one stopped: a job with a done-marker is skipped, a job is started only if its estimate
# fits in the call's time left, and a job stopped by the call's end is run again whole next call.
# Each call returns /tmp/s11 (models, traces and profiler dumps left out) as a split tar under $OUT.
set -u
cd "$(dirname "$0")/../../.."
G=${G:-bash scripts/gpu_host.sh}
OUT=${OUT:?}
S=${S:-/tmp/s11}
mkdir -p $S/done $S/logs
END=$((SECONDS + ${1:?call seconds} - 35))   # 35 s to pack and return
if [ "${2:-}" = install ]; then
  $G install /tmp/bundle > $S/logs/install.txt 2>&1; echo "install rc=$?"; tail -4 $S/logs/install.txt
  nvidia-smi > $S/logs/nvidia-smi.txt 2>&1
fi

job() {  # job GPU NAME ESTIMATE_S command...: run unless done or it cannot fit
  local gpu=$1 name=$2 est=$3; shift 3
  [ -e $S/done/$name ] && return 0
  local left=$((END - SECONDS))
  if [ $est -gt $left ]; then echo "[gpu$gpu] $name: ${left}s left < ${est}s, next call" >> $S/logs/queue.txt; return 0; fi
  echo "[gpu$gpu] $name start ($(date +%T), ${left}s left)" >> $S/logs/queue.txt
  local t0=$SECONDS
  CUDA_VISIBLE_DEVICES=$gpu timeout $left "$@" > $S/logs/$name.txt 2>&1
  local rc=$?
  echo "[gpu$gpu] $name rc=$rc in $((SECONDS - t0))s" >> $S/logs/queue.txt
  [ $rc = 0 ] && touch $S/done/$name
}

AG=$S/ag   # agentic: flash-12, one model folder and one 16-session trace for every invocation
gpu0() {
  job 0 trace 120 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('flash-12', '$AG/model')\" \
    && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json"
  for cfg in a c d e f; do  # concurrency 1 and 4; the same results.json gathers every config
    job 0 agentic-$cfg 200 $G bench agentic --out $AG --shape flash-12 --model-path $AG/model --trace $AG/trace.json \
      --configs $cfg --concurrency 1 4
  done
  for cfg in a c; do
    job 0 agentic16-$cfg 300 $G bench agentic --out $S/ag16 --shape flash-12 --model-path $AG/model --trace $AG/trace.json \
      --configs $cfg --concurrency 16
  done
  job 0 test-topk 100 $G test tests/test_topk.py
}
DEC="--phase decode --configs a d c --num-layers 12 --decode-batch 16 --decode-len 32768 --decode-steps 256 --decode-short 64 --decode-repeats 3"
gpu1() {  # issue 15's search cost, issue 12's MTP table, then issue 20's top-k and one turn on unit indexer weights
  job 1 search 400 $G bench search --out $S/search --shape glm-5.2-tp8
  job 1 decode-mtp 330 $G bench run --out $S/decode-mtp $DEC --mtp --profile-steps 8
  job 1 topk 150 $G bench topk --out $S/topk --dist dummy offset indexer \
    --impls torch sgl-legacy-paged sgl-legacy-ragged sgl-v2-ragged filter filter:2048:4:4
  job 1 decode-nomtp 300 $G bench run --out $S/decode-nomtp $DEC --profile-steps 8
  job 1 turn-unit 280 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench turn --out $S/turn-unit \
    --configs a c --new 1 2048 8192 --repeats 3
}
gpu0 & gpu1 & wait
cat $S/logs/queue.txt
for f in $S/logs/*.txt; do case $f in *queue*|*install*|*nvidia-smi*) continue;; esac; echo "== $f"; tail -5 "$f"; done
tar czf $S.tgz -C /tmp --exclude='s11/*/model' --exclude='s11/*/model-nextn' --exclude='trace.json' \
  --exclude='*/profiles' --exclude='*.trace.json*' s11
split -b 15M $S.tgz $OUT/s11.tgz.part-
ls -la $OUT
