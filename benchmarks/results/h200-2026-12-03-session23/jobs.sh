#!/usr/bin/env bash
# Session 23's device jobs on one H200: `bash benchmarks/results/h200-2026-12-03-session23/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace were made on the project's CPU machine and carried in .bundle-ag (the staging call
# copies it to $S/glm); the trace is sessions 20's and 21's (sha256 of the conversations 821ea80f):
#   python -c "from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s23; . scripts/device_queue.sh "$1" "${2:-}"

# the host's CPUs, pure-Python speed pinned to each (session 19: servers' host speed varies)
job cpus 30 python3 scripts/host_cpus.py speeds --rounds 3

# issue 14's first target on the 78-layer shape (one TP-8 rank of GLM-5.2, declared schedule, 21
# Full): (c) indexcache against (d) dsa native sharing, the same pattern, >= 0.99 on every figure.
# Session 20 ran one server each (0.985 to 1.004); here two each, in the order c d d c so that a
# drift of the host over the run falls on both alike, every server its own invocation and folder
# (a call holds two servers of this shape at most), joined afterwards on the CPU machine by
# `bench merge`. v2 top-k is the default for (c) since session 21; (d) is SGLang's own dsa.
GA=$S/glm
glm() {  # glm NAME ESTIMATE CONFIG
  job $1 $2 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $S/$1 --shape glm-5.2-tp8 \
    --model-path $GA/model --trace $GA/trace.json --configs $3 --concurrency 1 --min-sessions 1 \
    --prefill-graphs sglang
}
glm glm-c0 260 c
glm glm-d0 260 d
glm glm-d1 260 d
glm glm-c1 260 c
# v2 as the default in a server: the unset variable against v2 and against SGLang's top-k
# (SGLANG_INDEXCACHE_TOPK=upstream); this version of the test has not run on a GPU
job test-v2 200 $G test tests/test_gpu.py -k v2_extend_topk
job jit-pack 10 bash -c "$G jit-pack $S/jit-cache.tgz"
finish
