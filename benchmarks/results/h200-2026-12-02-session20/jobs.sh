#!/usr/bin/env bash
# Session 20's device jobs on one H200: `bash benchmarks/results/h200-2026-12-02-session20/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The models
# and traces were made on the project's CPU machine and carried (the staging call copies
# .bundle-ag to $S/glm, a later call .bundle-fl to $S/fl):
#   python -c "from sglang_indexcache.bench import common; common.make_model(SHAPE, DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s20; . scripts/device_queue.sh "$1" "${2:-}"

# the host's CPUs, pure-Python speed pinned to each (session 19: servers' host speed varies)
job cpus 30 python3 scripts/host_cpus.py speeds --rounds 3

# issue 14: the 78-layer shape (one TP-8 rank of GLM-5.2, its declared schedule, 21 Full) with
# what users run since session 15's run of it: SGLang's default breakable prefill graphs and the
# shape tokenizer SGLang's chat door encodes in parallel. Concurrency 1, one session (29 turns),
# unit indexer weights, one server per config: (c) indexcache, (a) dsa all Full, (d) dsa native
# sharing. (c) first pays the kernel JIT for this shape (209 s in session 15) and the graphs'
# capture: in the install's call it is expected to be stopped and to run again, warm, next call.
GA=$S/glm
glm() {  # glm NAME ESTIMATE CONFIG
  job $1 $2 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $GA --shape glm-5.2-tp8 \
    --model-path $GA/model --trace $GA/trace.json --configs $3 --concurrency 1 --min-sessions 1 \
    --prefill-graphs sglang
}
glm glm-c 300 c
# the kernels compiled so far (flash-12's restored + this shape's), for benchmarks/jit/
job jit-pack 40 bash -c "$G jit-pack $S/jit-cache.tgz"
glm glm-a 420 a
glm glm-d 400 d

# flash-12, (c) against (d) at concurrency 1 and 4 (2 and 4 sessions), a server each
FL=$S/fl
fl() {  # fl NAME ESTIMATE CONFIG
  job $1 $2 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $FL --shape flash-12 \
    --model-path $FL/model --trace $FL/trace.json --configs $3 --concurrency 1 4 --min-sessions 2 \
    --prefill-graphs sglang
}
fl fl-c 200 c
fl fl-d 200 d
finish
