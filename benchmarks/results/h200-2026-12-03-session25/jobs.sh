#!/usr/bin/env bash
# Session 25's device jobs on one H200: `bash benchmarks/results/h200-2026-12-03-session25/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue is scripts/device_queue.sh. The model
# and trace were made on the project's CPU machine and carried in .bundle-ag (the staging call
# copies it to $S/glm); the trace is sessions 20 to 24's (sha256 of the conversations 821ea80f):
#   python -c "from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
S=/tmp/s25; . scripts/device_queue.sh "$1" "${2:-}"
GA=$S/glm
U="env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit"

# Session 24: a turn of 18 new tokens on 124,544 cached ran in 32.1 ms of server forward through
# (c) in a turn server but 50 to 86 ms in the agentic servers' probes, (d) 38 against 38 to 53.
# What an agentic server has that a turn server lacks: decode steps before the turn, metrics and
# the cache report, 4 running requests with decode graphs up to 4, a longer context. All of it,
# through (c) and (d); then (c) with the metrics flags alone, and with the decode side alone.
AGENTIC_METRICS="--enable-metrics --enable-cache-report"
AGENTIC_DECODE="--max-running-requests 4 --cuda-graph-max-bs-decode 4 --context-length 147456"
turn() {  # turn NAME ESTIMATE CONFIG [more flags]
  local name=$1 est=$2 cfg=$3; shift 3
  job $name $est $U $G bench turn --out $S/$name --shape glm-5.2-tp8 --model-path $GA/model --configs $cfg \
    --context 124544 --new 18 --repeats 5 --prefill-graphs sglang "$@"
}
turn turn-c-ag 150 c --warm-decode 200 --server-args "$AGENTIC_METRICS $AGENTIC_DECODE"
turn turn-d-ag 120 d --warm-decode 200 --server-args "$AGENTIC_METRICS $AGENTIC_DECODE"
turn turn-c-m 120 c --server-args "$AGENTIC_METRICS"
turn turn-c-w 120 c --warm-decode 200 --server-args "$AGENTIC_DECODE"

# Issue 14's matrix on the 78-layer shape at concurrency 4: (a) dsa all Full and (e) indexcache at
# the lower retention (11 of 78 Full), the probe split per door and profiled; session 24 ran (c)
# and (d) at 4 with the same flags.
ag4() {  # ag4 NAME ESTIMATE CONFIG
  job $1 $2 $U $G bench agentic --out $S/$1 --shape glm-5.2-tp8 --model-path $GA/model --trace $GA/trace.json \
    --configs $3 --concurrency 4 --min-sessions 4 --prefill-graphs sglang --profile-probe
}
ag4 glm-a4 430 a
ag4 glm-e4 330 e
job jit-pack 10 bash -c "$G jit-pack $S/jit-cache.tgz"
finish
