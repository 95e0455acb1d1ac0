#!/usr/bin/env bash
# Session 26's device jobs on one H200: `bash benchmarks/results/h200-2026-12-04-session26/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# was made on the project's CPU machine and carried in .bundle-ag (the staging call copies it to
# $S/glm):
#   python -c "from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', DIR/model)"
S=/tmp/s26; . scripts/device_queue.sh "$1" "${2:-}"
GA=$S/glm
U="env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit"

# The fused v2-paged top-k (backend/csrc/paged_topk.cuh, SGLang's JIT builds it here first):
# row for row against v2 then the torch map, and torch.topk's set; then host and GPU time per
# call against SGLang's legacy kernel and v2 with the torch map, 18 and 2,048 rows on 124,544.
job test-topk 150 $G test tests/test_topk.py
job topk 120 $G bench topk --out $S/topk --rows 18 2048 --prefix 124544 --dist indexer dummy --repeats 30 \
  --impls sgl-legacy-paged sgl-v2-ragged ours-v2 ours-v2-paged

# Session 25: the 18-token turn on 124,544 cached is host-bound through (c) (v2, the torch map),
# 32 to 72 ms of forward on 20.8 ms of GPU work, (d) 38 ms. (c) with v2-paged (the new default),
# with v2, (d); (c) with v2-paged again (host speed moves from server to server).
turn() {  # turn NAME ESTIMATE CONFIG [env]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est $U "$@" $G bench turn --out $S/$name --shape glm-5.2-tp8 --model-path $GA/model --configs $cfg \
    --context 124544 --new 18 --repeats 5 --prefill-graphs sglang
}
turn turn-cp 170 c
turn turn-c2 130 c SGLANG_INDEXCACHE_TOPK=v2
turn turn-d 130 d
turn turn-cp2 130 c

# In servers: v2-paged against SGLang's legacy top-k and v2 (bf16 KV), and on the paged route
# against upstream native sharing.
job test-gpu 360 $G test tests/test_gpu.py -s -k "v2_extend_topk or (short_extends and v2-paged)"
finish
