#!/usr/bin/env bash
# Issue 14, for the next session with one H200: (c) against (d) under MTP at concurrency 16, in
# the order session 33 used without MTP. Session 31 ran one server each, (c) first: 0.904 on
# sessions/min, TTFT median 0.720. Session 33 (without MTP) found the session's first server the
# slowest to first token whatever its configuration, and with (d) first and the order balanced,
# (c) over (d) 1.053 on sessions/min. Here: an MTP (d) server first, reported apart (it also pays
# the draft model's kernel JIT, which benchmarks/jit/ lacks: no MTP server ran in session 33),
# then c d d c, every forward's GPU span and the scheduler's stacks recorded. Since session 34
# every server also logs SGLang's per-request timestamps and py-spy samples its HTTP process:
# report.sh's split.txt then says where each configuration's TTFT goes (tokenize, handover, queue,
# prefill, return, client), which sessions 28 to 33 could only split into the scheduler's part
# and the rest (the rest ranked the >= 96K TTFT medians; (c)'s servers had more of it).
#
#   S=/tmp/s34 bash benchmarks/jobs/mtp-balanced.sh CALL_SECONDS [install]
#   afterwards: bash benchmarks/jobs/report.sh DIR mtp=mtp-c1,mtp-d1,mtp-d2,mtp-c2 fl=fl-c3,fl-u3,fl-u4,fl-c4
#
# Staging as session 33 (README, "Staging through the device tool"): benchmarks/results/ out of
# the work tree, 23 parts of 56 MiB, the last call also carrying .bundle-fl (the flash-12
# tokenizer and session 27's trace, sha256 821ea80f; made on the CPU machine:
#   python -c "from sglang_indexcache.bench import common; common.make_model('flash-12', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
# ) and running `mkdir -p $S && cp -r .bundle-fl $S/fl && S=$S bash benchmarks/jobs/mtp-balanced.sh 590 install`.
# Device time, from sessions 31 and 33: staging 175 s, install 120 s, the MTP servers 210 to 255 s
# each (the first more), so about 1,600 of the 1,800 s; `mtp-balanced.sh 595` for the next calls, the
# last one sized to what `lease.budget_left_s` says is left.
S=${S:-/tmp/s34}; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl
A=(--shape flash-12 --trace "$FL/trace.json" --concurrency 16 --prefill-graphs sglang --forward-pass-metrics --py-spy)
# --mtp without --model-path: the benchmark writes the shape with one NextN layer for EAGLE to draft with
ag mtp-w1 300 -- "${A[@]}" --configs d --mtp
ag mtp-c1 240 -- "${A[@]}" --configs c --mtp
ag mtp-d1 240 -- "${A[@]}" --configs d --mtp
ag mtp-d2 240 -- "${A[@]}" --configs d --mtp
ag mtp-c2 240 -- "${A[@]}" --configs c --mtp
job jit-pack 30 $G jit-pack "$S/jit-cache.tgz"   # the draft model's kernels, for benchmarks/jit/
# spares, should the budget allow: session 33's open question without MTP, (u) (SGLang's top-k)
# had better TTFT medians than (c) though its prefill took more GPU time; two more of each, balanced
ag fl-c3 180 -- "${A[@]}" --configs c --model-path "$FL/model"
ag fl-u3 180 -- "${A[@]}" --configs u --model-path "$FL/model"
ag fl-u4 180 -- "${A[@]}" --configs u --model-path "$FL/model"
ag fl-c4 180 -- "${A[@]}" --configs c --model-path "$FL/model"
finish
