#!/usr/bin/env bash
# Issue 14, the question fl-stages.sh asks, on a GPU an H100's size: where (c)'s and (d)'s TTFT
# goes at concurrency 16 on the flash-12 shape, by stage (tokenize, handover, queue, prefill,
# return, client; py-spy on the HTTP process), on a 32K trace. Session 37 asked for an H200
# five times in about 40 minutes and got none; an H100's pool (574,336 tokens at the 0.3
# fraction for 128K prefills) holds the 16 sessions of a 32K trace (489,962 tokens,
# `agentic.working_set`) but not those of the 128K trace (2,040,320: session 36 measured
# re-prefill). So this answers whether (c)'s servers carry more host time outside the scheduler
# than (d)'s (sessions 28 to 33, on the 128K trace) where every history stays cached; it has no
# turn at >= 96K. d c d c, as fl-stages.sh.
#
#   S=/tmp/s37 bash benchmarks/results/h100-2026-12-05-session37/jobs.sh CALL_SECONDS [install]
#   afterwards: bash benchmarks/jobs/report.sh DIR fl32=fl32-d1,fl32-c1,fl32-d2,fl32-c2,fl32-a1
#
# The trace (sha256 a674dde8), made on the CPU machine and carried in .bundle-fl beside the model:
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 32k --sessions 16 --seed 0 --out DIR/trace-32k.json
# Device time on the H100 (session 37, `logs/queue.txt`): 210 s for the first job (its server's
# start 127 s, kernel JIT), 131 to 159 s for each later one.
S=${S:-/tmp/s37}; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl
A=(--shape flash-12 --model-path "$FL/model" --trace "$FL/trace-32k.json" --concurrency 16 --prefill-graphs sglang
   --forward-pass-metrics --py-spy)
ag fl32-d1 330 -- "${A[@]}" --configs d
ag fl32-c1 200 -- "${A[@]}" --configs c
ag fl32-d2 200 -- "${A[@]}" --configs d
ag fl32-c2 200 -- "${A[@]}" --configs c
# Session 37's last call (290 s left): (a) dsa all Full, for (c) and (d) against it on this trace.
ag fl32-a1 200 -- "${A[@]}" --configs a
finish
