#!/usr/bin/env bash
# Issue 14: (c) against (d) under MTP (EAGLE over one NextN layer) in a balanced order, (d)
# first: benchmarks/jobs/fl-stages.sh with MTP=1 (its header: traces, concurrency, estimates,
# staging). Session 31 ran one server each at concurrency 16 on the 128K trace, (c) first: 0.904
# on sessions/min, TTFT median 0.720; session 33 (without MTP) then found the session's first
# server the slowest to first token whatever its configuration. With dummy weights the draft is
# never accepted (accept length 1.00): this measures MTP's cost, not its gain.
#
# Which question fits which GPU (the first staging call's nvidia-smi says which came):
#   H200: the 128K trace at 16, as session 31 (runs mtp-*; its MTP servers took 210 to 255 s,
#         the queue estimates 300 s for the first and 250 after, so about five a session):
#     S=/tmp/sNN bash benchmarks/jobs/mtp-balanced.sh CALL_SECONDS [install]
#   H100: the 32K trace at 16 (runs mtp32-*; under MTP its pool, 407,744 tokens, is less than the
#         489,962 the 16 histories need, so some are re-prefilled; session 42: 192 s for the first
#         server, 110 to 112 after; estimates 260 and 165 since session 44):
#     TRACE=trace-32k.json S=/tmp/sNN bash benchmarks/jobs/mtp-balanced.sh CALL_SECONDS [install]
#         (session 43 ran it with ORDER="c d c d c d", the reverse, on another H100: c1 213 s, the
#         others 124 to 133 s; c d c d ran, benchmarks/results/h100-2026-12-06-session43/)
#   either: the 128K trace at concurrency 1 (runs mtp-conc1-*; session 42: 131 s a server,
#         estimates 325 and 175): CONC=1 ...
#   afterwards: bash benchmarks/jobs/report.sh DIR mtp=mtp-d1,mtp-c1,mtp-d2,mtp-c2,... (mtp32=mtp32-..., mtp1=mtp-conc1-...)
#
# Until session 41 this script ran its own queue: an MTP (d) reported apart, then c d d c, the
# draft model's kernels packed for benchmarks/jit/, and session 33's (u) servers as spares.
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
MTP=1 ORDER=${ORDER:-d c d c d c} exec bash benchmarks/jobs/fl-stages.sh "$@"
