#!/usr/bin/env bash
# Session 21's device jobs on one H200: `bash benchmarks/results/h200-2026-12-02-session21/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace are session 20's (made on the project's CPU machine, carried in .bundle-ag; the
# staging call copies it to $S/glm):
#   python -c "from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s21; . scripts/device_queue.sh "$1" "${2:-}"

# the host's CPUs, pure-Python speed pinned to each (session 19: servers' host speed varies)
job cpus 30 python3 scripts/host_cpus.py speeds --rounds 3

# issue 14 on the 78-layer shape (one TP-8 rank of GLM-5.2, declared schedule, 21 Full): the
# cheaper Full layer. (m) is (c) with SGLANG_INDEXCACHE_TOPK=v2 (the top-k is a third of an
# indexer's GPU time at +2,048, and v2 halves it), against (a) dsa all Full; two sessions each
# (about 14 turns at >= 96K instead of 7), concurrency 1, one server each; then (e), every other
# declared Full layer (11 of 78), one session.
GA=$S/glm
glm() {  # glm NAME ESTIMATE CONFIG SESSIONS
  job $1 $2 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $GA --shape glm-5.2-tp8 \
    --model-path $GA/model --trace $GA/trace.json --configs $3 --concurrency 1 --min-sessions $4 \
    --prefill-graphs sglang
}
glm glm-m 400 m 2
glm glm-a 390 a 2
# v2 in a server against SGLang's own top-k (never run on a GPU), and v2 after the paged route
# against upstream native sharing: what making v2 the default needs
job test-v2 300 $G test tests/test_gpu.py -k "v2_extend_topk or (short_extends and bf16-v2)"
glm glm-e 250 e 1
job jit-pack 10 bash -c "$G jit-pack $S/jit-cache.tgz"
finish
