#!/usr/bin/env bash
# After a session's queue (benchmarks/jobs/*.sh, moved into the results folder it ran for): DIR is
# the folder its tar unpacked into (benchmarks/results/h200-DATE-sessionNN, holding one folder per
# server). Makes what the session commits and reads: server logs gzipped, per-request files
# compacted, each NAME=RUN,RUN,... merged into DIR/NAME (the runs present, in the order given:
# each configuration's servers in the order they ran) with its report and plot, and the
# side-by-side tables of every server's GPU spans, host gap and GPU time at equal work
# (`bench spans`, one table per group of like replays), of each replay's TTFT split into the
# scheduler's part and the host time outside it (`bench split`: split.txt), and of the
# scheduler's and the HTTP process's stacks (`bench pyspy`: pyspy.txt, pyspy-http.txt).
#
#   bash benchmarks/jobs/report.sh DIR [NAME=RUN,RUN,... ...] [PYTHON]
#   e.g. session 33: bash benchmarks/jobs/report.sh DIR fl=fl-c1,fl-d1,fl-u1,fl-d2,fl-c2,fl-u2
set -euo pipefail
DIR=${1:?results folder}; shift
MERGES=()
while [ $# -gt 0 ] && [[ $1 == *=* ]]; do MERGES+=("$1"); shift; done
PY=${1:-.venv/bin/python}
B="$PY -m sglang_indexcache.bench"
cd "$(dirname "$0")/../.."
shopt -s nullglob

for f in "$DIR"/*/*-server.log; do gzip -f "$f"; done
plain=("$DIR"/*/*.jsonl)  # bench_serving's (the per-forward files are written gzipped)
[ ${#plain[@]} -gt 0 ] && $B compact "${plain[@]}"

merge() {  # merge NAME RUN...: the runs present, in the order given
  local name=$1; shift
  local files=()
  for run in "$@"; do [ -f "$DIR/$run/results.json" ] && files+=("$DIR/$run/results.json"); done
  [ ${#files[@]} -ge 2 ] || { echo "$name: fewer than two of $* have results; not merged"; return 0; }
  $B merge "${files[@]}" --out "$DIR/$name" --png "$DIR/$name/ag.png" || { echo "$name: not merged"; return 0; }
  $B report "$DIR/$name/results.json" --png "$DIR/$name/ag.png" > "$DIR/$name/report.txt"
}
for m in ${MERGES[@]+"${MERGES[@]}"}; do runs=${m#*=}; merge "${m%%=*}" ${runs//,/ }; done

# one table per group of like replays: `bench spans` fits its equal-work model over the files it
# is given, so servers of one concurrency and one decode kind are compared among themselves
: > "$DIR/spans.txt"
: > "$DIR/split.txt"
for group in "fl*-*/*-c16" "fl*-*/*-c1" "fl*-*/*-c4" "mtp*-*/*-c16" "mtp*-*/*-c1" "glm-*/*-c16"; do
  fpm=("$DIR"/$group-fpm.jsonl.gz)
  [ ${#fpm[@]} -gt 0 ] && { echo "== $group"; $B spans "${fpm[@]}"; } >> "$DIR/spans.txt"
  served=("$DIR"/$group.jsonl.gz)
  [ ${#served[@]} -gt 0 ] && { echo "== $group"; $B split "${served[@]}"; } >> "$DIR/split.txt"
done
spy=("$DIR"/fl*-*/*-pyspy.txt.gz "$DIR"/mtp*-*/*-pyspy.txt.gz "$DIR"/glm-*/*-pyspy.txt.gz)
[ ${#spy[@]} -gt 0 ] && $B pyspy "${spy[@]}" --top 30 > "$DIR/pyspy.txt"
spy=("$DIR"/fl*-*/*-pyspy-http.txt.gz "$DIR"/mtp*-*/*-pyspy-http.txt.gz "$DIR"/glm-*/*-pyspy-http.txt.gz)
[ ${#spy[@]} -gt 0 ] && $B pyspy "${spy[@]}" --top 30 > "$DIR/pyspy-http.txt"
ls "$DIR"
