#!/usr/bin/env bash
# Session 10's device jobs on one H200, as they ran: `bash jobs.sh one|two|three`, each a
# device call (600 s at most) writing under $OUT. The bundle's 21 parts were staged in
# /tmp/bundle by the calls before `one`.
set -u
cd "$(dirname "$0")/../../.."
G="bash scripts/gpu_host.sh"
OUT=${OUT:?}
case "${1:?one|two|three}" in
  one)  # install; the top-k kernels alone; the kernel's GPU test
    $G install /tmp/bundle > "$OUT/install.txt" 2>&1; tail -4 "$OUT/install.txt"
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
    timeout 240 $G bench topk --out "$OUT/topk" --dist indexer bf16 normal > "$OUT/topk.txt" 2>&1
    echo "topk rc=$?"; tail -45 "$OUT/topk.txt"
    timeout 120 $G test tests/test_topk.py > "$OUT/gpu-test-topk.txt" 2>&1
    echo "test rc=$?"; tail -6 "$OUT/gpu-test-topk.txt"
    ;;
  two)  # the decode gap: (d) then (c), then (c) then (d), profiled, 16 x 32K (call 2 ran this after a top-k run; see README.md)
    for order in "d c" "c d"; do
      dir="$OUT/decode-${order// /}"
      timeout 290 $G bench run --phase decode --configs $order --num-layers 12 --decode-batch 16 \
        --decode-len 32768 --decode-steps 256 --decode-short 64 --decode-repeats 3 --profile-steps 16 \
        --out "$dir" > "$dir.txt" 2>&1
      echo "decode $order rc=$?"; grep -E "^\[|tok/s" "$dir.txt" | tail -6
    done
    ;;
  three)  # one turn on a 123K cached prefix: SGLang's top-k against the filter top-k (h, j)
    timeout "${T:-560}" $G bench turn --out "$OUT/turn" --configs a b h c j --new 1 2048 8192 --repeats 5 \
      > "$OUT/turn.txt" 2>&1
    echo "turn rc=$?"; tail -30 "$OUT/turn.txt"
    ;;
esac
