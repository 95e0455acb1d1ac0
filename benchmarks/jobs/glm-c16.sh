#!/usr/bin/env bash
# Issue 14, for a session with one H200 and the 78-layer shape's missing row: glm-5.2-tp8 (one TP-8
# rank of GLM-5.2, 21 of 78 layers Full) at concurrency 16, (d) then (c), one server each. One such
# server needs more than a device call (600 s): session 24's ran 4 sessions in 124 s at
# concurrency 4 after a 92 to 144 s start, so 16 sessions with the warm-up and probe are about
# 600 to 800 s. `ag_long` (scripts/device_queue.sh `long`) starts each in its own process session,
# which the device tool keeps between back-to-back calls, and waits for it call after call.
#
#   S=/tmp/s35 bash benchmarks/jobs/glm-c16.sh CALL_SECONDS [install]
#   afterwards: bash benchmarks/jobs/report.sh DIR glm16=glm-d16,glm-c16
#
# Staging as session 33 (README, "Staging through the device tool"), the last call also carrying
# .bundle-ag (made on the CPU machine; the trace is sessions 20 to 25's, sha256 821ea80f:
#   python -c "from sglang_indexcache.bench import common; common.make_model('glm-5.2-tp8', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
# ) and running `mkdir -p $S && cp -r .bundle-ag $S/glm && S=$S bash benchmarks/jobs/glm-c16.sh 590 install`,
# then `glm-c16.sh 595` in calls that follow each other at once (a pause gives the machine back and
# stops the server). Device time: staging 175 s, install 120 s, two servers of 600 to 800 s:
# about all of the 1,800 s; the (c) server is the one that may not fit.
#
# Session 36: at concurrency 16 this shape cannot keep the sessions' histories on one GPU. Its pool
# on an H200 is 564,864 tokens at 86.3 KB a token (48.73 GB, session 24's log); the 16 sessions of
# this trace reach 2,040,320 tokens (`agentic.working_set`), 176 GB, more than the GPU. So the
# replay evicts histories and re-prefills them (as a TP-8 rank of GLM-5.2 would, whose latent KV
# every rank holds whole, without hierarchical cache or DP attention), and `bench agentic` marks
# the level `KV POOL 564,864 < 2,040,320 NEEDED`: its ratios then weigh re-prefills of whole
# histories, not only the cached turns. Concurrency 4 (518,105 tokens) fits, as in sessions
# 24 and 25. Run it knowing that, or give TRACE a `--size 32k` trace (same command, `--size 32k`,
# carried in .bundle-ag): its 16 sessions need 489,962 tokens (42.3 GB), which fit, but it has
# no turn at >= 96K.
S=${S:-/tmp/s35}; . scripts/device_queue.sh "$1" "${2:-}"
GA=$S/glm
TRACE=${TRACE:-$GA/trace.json}
A=(--shape glm-5.2-tp8 --model-path "$GA/model" --trace "$TRACE" --concurrency 16 --prefill-graphs sglang
   --forward-pass-metrics --py-spy)
ag_long glm-d16 800 -- "${A[@]}" --configs d
ag_long glm-c16 800 -- "${A[@]}" --configs c
finish
