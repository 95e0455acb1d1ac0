#!/usr/bin/env bash
# Session 24's device jobs on one H200: `bash benchmarks/results/h200-2026-12-03-session24/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace were made on the project's CPU machine and carried in .bundle-ag (the staging call
# copies it to $S/glm); the trace is sessions 20, 21 and 23's (sha256 of the conversations 821ea80f):
#   python -c "from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s24; . scripts/device_queue.sh "$1" "${2:-}"
GA=$S/glm
U="env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit"

# Issue 14's first target at concurrency 4 on the 78-layer shape: (c) indexcache against (d) dsa
# native sharing, the same pattern, one server each, 4 sessions (session 23 ran concurrency 1,
# two servers each, 1.000 to 1.053 on every figure).
ag4() {  # ag4 NAME ESTIMATE CONFIG
  job $1 $2 $U $G bench agentic --out $S/$1 --shape glm-5.2-tp8 --model-path $GA/model --trace $GA/trace.json \
    --configs $3 --concurrency 4 --min-sessions 4 --prefill-graphs sglang
}
ag4 glm-c4 340 c
ag4 glm-d4 340 d

# Session 23's probe: a turn of 18 new tokens on 124,544 cached took 0.13 to 0.16 s through (c)
# against 0.10 to 0.12 s through (d) (token-id door), while the trace's turns of 1K to 8K were 3
# to 6 % faster. The same turn timed and profiled, SGLang's default prefill graphs on as the
# agentic servers run them, +2,048 as the control; one server per job, one results.json.
turn() {  # turn NAME ESTIMATE CONFIG [more flags]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est $U $G bench turn --out $S/turn --shape glm-5.2-tp8 --model-path $GA/model --configs $cfg \
    --context 124544 --new 18 2048 --repeats 5 --prefill-graphs sglang "$@"
}
turn turn-c 250 c
turn turn-d 240 d
# (c) with the paged logits route off (config p, --paged-rows 0): is the route the short turn's cost?
turn turn-p0 250 p --paged-rows 0
job jit-pack 10 bash -c "$G jit-pack $S/jit-cache.tgz"
finish
