#!/usr/bin/env bash
# Issue 14: where (c)'s and (d)'s TTFT goes at concurrency 16 on the flash-12 shape, by stage.
# Sessions 28 to 33 could split a turn's TTFT only into the scheduler's part and the host time
# outside it; that outside time ranked the servers' >= 96K TTFT medians, and (c)'s servers had
# more of it than (d)'s in all four sessions, though no backend code runs there. Since session 34
# every server logs SGLang's per-request timestamps (tokenize, handover, queue, prefill, return,
# client) and py-spy samples its HTTP process. (d) first, then d c d c: three servers are
# balanced ((c) between two (d)), a fourth as the budget allows (ORDER below). MTP (MTP=1,
# below) was left out at first: mtp-balanced.sh then needed about 1,600 s of device time, more
# than was left in session 35 after its first calls got no machine (15 s each, 90 s for a start
# that failed); since session 41 mtp-balanced.sh is this script with MTP=1.
# Session 36 ran it on an H100 (the first call decides the kind): fl-d1 did not finish in 372 s.
# There the fraction for 128K prefills (0.3, `common.mem_fraction_for`) leaves a 574,336-token
# pool, and 16 sessions growing to about 128K need 2,040,320 (`agentic.working_set`): the replay
# evicted and re-prefilled histories (benchmarks/results/h100-2026-12-05-session36/). So this job
# needs a GPU of about 141 GB (an H200: 5.1M tokens, 50 s a replay) and stops on a smaller one:
# weights 15.9 GB + 2,040,320 tokens at 13.25 KB (27.0 GB) + the 54 GB left outside the pool
# there (batches of 16K-token chunks: once 51.6 GB of it held and an 11.5 GB allocation failed)
# pass 80 GB. So every call of it with the 128K trace passes the device tool's `needs_h200:
# true`, the first (staging) call included.
# Session 37 got no H200 in five tries and asked the same question on an H100 with a 32K trace
# (benchmarks/results/h100-2026-12-05-session37/: its jobs.sh): no (c)-over-(d) host time there.
# Session 38, again no H200: TRACE=trace-32k.json ORDER="d c d c d c" on an H100
# (benchmarks/results/h100-2026-12-05-session38/): (c) over (d) >= 0.99 on every figure.
# Session 39, no H200 again: CONC=1 ORDER="d c d c d c d c" on an H100, d c d c d ran
# (benchmarks/results/h100-2026-12-06-session39/: TTFT >= 0.99, decode set by each server's host).
# Session 40, an H200: TRACE=trace.json ORDER="d c d c d c", d c c d ran
# (benchmarks/results/h200-2026-12-06-session40/: every figure >= 0.99, >= 96K median 1.023).
# Session 41, two H100s: CONC=1 ORDER="d c d c d c", d c on the first (given back between two
# calls), d c d c d on the second (benchmarks/results/h100-2026-12-06-session41/: every figure
# and every pairing >= 0.99 at concurrency 1, TPOT 0.997).
#
#   S=/tmp/sNN bash benchmarks/jobs/fl-stages.sh CALL_SECONDS [install]
#   TRACE=trace-32k.json ORDER="d c d c d c d c" S=... bash benchmarks/jobs/fl-stages.sh ...
#   afterwards: bash benchmarks/jobs/report.sh DIR fl=fl-d1,fl-c1,fl-d2,fl-c2,... (fl32=fl32-... for 32K)
#   (and bench merge of glm-e4 with sessions 24's and 25's glm4 rows)
#
# TRACE names the trace under $S/fl: trace.json (128K, the default; H200 only, its runs named
# fl-*) or trace-32k.json (an H100 holds its 16 sessions; runs named fl32-*, as session 37's).
# CONC (16 unless given) is the concurrency: at 1 or 4 the 128K trace's live sessions fit an H100's
# pool (at 4: 518,105 of 574,336 tokens), so the H200 guard applies above 4 only; concurrency 1
# replays two sessions (46 turns, 14 at >= 96K), as session 28 did.
# ORDER lists the servers' configurations in the order they run ("d c d c" unless given: (d)
# first, so each (c) sits between two (d)); a run is named PREFIX-CONFIG then its count.
# The 32K trace, made on the CPU machine and carried in .bundle-fl beside the model (sha256
# a674dde8):
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 32k --sessions 16 --seed 0 --out DIR/trace-32k.json
#
# MTP=1 runs each server under MTP (EAGLE over one NextN layer, `bench agentic --mtp`; without
# --model-path the benchmark writes the shape with that layer, and the shipped tokenizer the
# traces were made with): runs named mtp-*, mtp32-*, mtp-conc1-*, as the prefixes above with fl
# swapped for mtp. Session 31 ran it one server each at 16 on the 128K trace, (c) first (0.904
# sessions/min); benchmarks/jobs/mtp-balanced.sh runs it in a balanced order (session 42, an
# H100: the 32K trace at 16 and the 128K trace at 1, benchmarks/results/h100-2026-12-06-session42/).
# Under MTP the draft's KV pool leaves the target 407,744 tokens on an H100 at fraction 0.3, less
# than the 32K trace's 489,962 at 16: those replays re-prefill some history.
#
# Staging (README, "Offline install"; benchmarks/results/ out of the work tree): 23 parts of 56
# MiB in back-to-back calls, the last also carrying .bundle-fl (the flash-12 tokenizer and the
# traces; session 27's 128K trace, sha256 821ea80f, made on the CPU machine:
#   python -c "from sglang_indexcache.bench import common; common.make_model('flash-12', DIR/model)"
#   python -m sglang_indexcache.bench trace --tokenizer DIR/model --size 128k --sessions 16 --seed 0 --out DIR/trace.json
# ) and running `mkdir -p $S && cp -r .bundle-fl $S/fl && S=$S bash benchmarks/jobs/fl-stages.sh 590 install`.
# Device time: on an H200 at 128K (session 33) staging 175 s, install 120 s, 140 to 180 s a
# server; session 40's H200 install 150 s, 232 s for the first server, 187 and 188 s after (the
# estimates below: its second server, started on 170, was stopped in its shutdown). On an H100
# at 32K 210 s for the first server (kernel JIT), 131 to 159 s for each later one in session
# 37, 136 s and 88 to 96 s on session 38's faster host.
S=${S:-/tmp/s35}; . scripts/device_queue.sh "$1" "${2:-}"
FL=$S/fl
TRACE=${TRACE:-trace.json}
ORDER=${ORDER:-d c d c}
CONC=${CONC:-16}
mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0)
if [ "$TRACE" = trace.json ]; then
  P=fl FIRST=240 NEXT=190
  if [ "$CONC" -gt 4 ] && [ "$mib" -lt 120000 ]; then
    echo "fl-stages: GPU 0 has $mib MiB; the 128K trace's $CONC live histories need an H200's pool (see the header)" | tee -a "$S/logs/queue.txt"
    finish; exit 4
  fi
else
  P=fl32 FIRST=330 NEXT=200
fi
A=(--shape flash-12 --trace "$FL/$TRACE" --concurrency "$CONC" --prefill-graphs sglang --forward-pass-metrics
   --py-spy)
if [ "$CONC" != 16 ]; then  # runs named fl-conc1-d1, ...; two sessions at concurrency 1 (session 28's)
  P=$P-conc$CONC FIRST=300 NEXT=150
  [ "$CONC" = 1 ] && A+=(--min-sessions 2)
fi
if [ "${MTP:-0}" = 1 ]; then
  # MTP's extra time: session 31's servers at 16 on the 128K trace (H200) 210 to 255 s, 60 s more
  # than without; session 42's (H100) on the 32K trace at 16 110 to 112 s after the first (192 s),
  # at 1 on the 128K trace 131 to 132 s (111 to 119 without MTP in session 41): 25 s more there.
  # With 60 s there, session 42's queue held mtp32-c3 with 235 s left and mtp-conc1-c2 with 190.
  # On the 32K trace at 16 MTP added nothing measurable (sessions 42 and 43: 192 and 213 s for the
  # first server, 110 to 133 after, against 210 and 131 to 159 without in session 37), and its
  # estimates (355, 225) were 1.7x what ran: there the first server gets 260 s, each later one 165.
  if [ "$P" = fl ]; then more=60; elif [ "$P" = fl32 ]; then more=0 FIRST=260 NEXT=165; else more=25; fi
  A+=(--mtp) P=mtp${P#fl} FIRST=$((FIRST + more)) NEXT=$((NEXT + more))
else
  A+=(--model-path "$FL/model")
fi
declare -A n=()
est=$FIRST
for c in $ORDER; do
  n[$c]=$((${n[$c]:-0} + 1))
  ag "$P-$c${n[$c]}" "$est" -- "${A[@]}" --configs "$c"
  est=$NEXT
done
# Then, on an H200 whose staging carried .bundle-ag (the 78-layer glm-5.2-tp8 model and its
# 128K trace, as glm-c16.sh says) to $S/glm: (e), indexcache at the lower retention (11 of 78
# Full), at concurrency 4 with session 25's flags, the row that session's (a) and session 24's
# (c) and (d) lack (`bench merge` joins them: same trace, flags and kind of machine). Session
# 25's (a) took 357 s; this is the first 64-head server on the machine, so some kernels compile
# again.
if [ -d "$S/glm" ] && [ "$mib" -ge 120000 ]; then
  ag glm-e4 450 -- --shape glm-5.2-tp8 --model-path "$S/glm/model" --trace "$S/glm/trace.json" --configs e \
    --concurrency 4 --min-sessions 4 --prefill-graphs sglang --profile-probe
fi
finish
