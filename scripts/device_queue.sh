#!/usr/bin/env bash
# A queue of device jobs for one call of the `device` tool, kept across calls while the machine
# is warm. A session's own script sources this, then lists its jobs and calls `finish`:
#
#   S=/tmp/s13; . scripts/device_queue.sh "$1" "${2:-}"    # CALL_SECONDS [install]
#   job test-kernels 100 $G test tests/test_paged_extend.py -k deepgemm
#   job turn-a 300 $G bench turn --out $S/turn --configs a
#   long glm-c16 900 $G bench agentic ...    # a job longer than one call (see `long`)
#   finish
#
# A job with a done-marker in $S/done is skipped; jobs run in the order listed, and the first one
# whose estimate does not fit in the call's time left ends the call's queue (the rest wait for the
# next call: session 14's queue let a later, smaller job start on a fresh machine, where it paid
# the kernel JIT its estimate left out and was stopped); a job stopped by the call's end runs again
# whole next call; after each job, the SGLang servers it started and left running are killed
# (not others: on a shared machine those may be someone's), so the next job finds the GPU free
# (session 12: a job stopped by `timeout` left servers that held 100 of 139 GB), and $S (models
# and profiler dumps left out) is packed again as a split tar under $OUT ($OUT brings back at
# most 8 files): a call the device tool stops before CALL_SECONDS (less device time was left
# than the call asked for) still returns every job finished before. `finish` packs once more.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${G:-bash scripts/gpu_host.sh}
OUT=${OUT:?set by the device tool}
S=${S:?a state folder, e.g. /tmp/s13}
mkdir -p "$S/done" "$S/logs"
END=$((SECONDS + ${1:?call seconds} - 35))   # 35 s to pack and return
if [ "${2:-}" = install ]; then
  $G install /tmp/bundle > "$S/logs/install.txt" 2>&1; echo "install rc=$?"; tail -4 "$S/logs/install.txt"
  nvidia-smi > "$S/logs/nvidia-smi.txt" 2>&1
elif [ ! -d "${SG:-/tmp/sg}/sglang" ]; then
  # a machine given back between calls comes back bare (session 16 lost a call to it): say so
  # at once instead of letting every job fail on a missing SGLang
  echo "no install in ${SG:-/tmp/sg}: a fresh machine; stage the bundle and run with 'install'" >&2
  exit 3
fi

servers() { pgrep -f sglang.launch_server | sort; }

clear_gpu() {  # kill the servers a job started and left running (none it found there)
  local left
  left=$(comm -13 <(echo "$1") <(servers) | tr '\n' ' ')
  if [ -n "${left// }" ]; then
    echo "  killing servers the job left: $left" >> "$S/logs/queue.txt"
    kill -9 $left 2>/dev/null; sleep 3
  fi
}

HELD=""  # the first job that did not fit this call; every later one waits behind it
# Sampled every GPU_EVERY_S seconds while a job runs, into logs/NAME-gpu.csv: sessions 30 and
# 31 saw the same decode graphs' GPU spans grow over a session, server after server; these say
# whether the GPU's clocks or power moved with them.
GPU_FIELDS=timestamp,index,temperature.gpu,clocks.sm,clocks.mem,power.draw,utilization.gpu
GPU_EVERY_S=${GPU_EVERY_S:-5}

sampled() {  # sampled NAME LIMIT_S command...: the command under `timeout` into logs/NAME.txt, the
  # GPU's clocks beside it; returns the command's status
  local name=$1 limit=$2 smi="" rc; shift 2
  if command -v nvidia-smi > /dev/null; then  # the GPU's clocks, heat and power through the job
    nvidia-smi --query-gpu=$GPU_FIELDS --format=csv -l "$GPU_EVERY_S" > "$S/logs/$name-gpu.csv" 2>&1 &
    smi=$!
  fi
  timeout "$limit" "$@" > "$S/logs/$name.txt" 2>&1
  rc=$?
  [ -n "$smi" ] && { kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null; }
  return $rc
}
export S GPU_FIELDS GPU_EVERY_S
export -f sampled

waits() {  # waits NAME: true (and said, if held) when NAME is done or held behind an earlier job
  [ -e "$S/done/$1" ] && return 0
  if [ -n "$HELD" ]; then echo "$1: behind $HELD, next call" >> "$S/logs/queue.txt"; return 0; fi
  return 1
}

ended() {  # ended NAME RC SECONDS SERVERS_BEFORE: log it, kill the servers it left, mark it done if it passed, pack
  echo "$1 rc=$2 in $3s" >> "$S/logs/queue.txt"
  clear_gpu "$4"
  [ "$2" = 0 ] && touch "$S/done/$1"
  pack
}

job() {  # job NAME ESTIMATE_S command...: run unless done, or held behind a job that did not fit
  local name=$1 est=$2; shift 2
  waits "$name" && return 0
  local left=$((END - SECONDS))
  if [ "$est" -gt "$left" ]; then
    HELD=$name; echo "$name: ${left}s left < ${est}s, next call" >> "$S/logs/queue.txt"; return 0
  fi
  echo "$name start ($(date +%T), ${left}s left)" >> "$S/logs/queue.txt"
  local t0=$SECONDS before
  before=$(servers)
  sampled "$name" "$left" "$@"
  ended "$name" $? $((SECONDS - t0)) "$before"
  return 0
}

long() {  # long NAME ESTIMATE_S command...: a job longer than one call (a 78-layer server at
  # concurrency 16). It starts in its own process session, which the device tool leaves running
  # when a call returns (its README, Notes) as long as the next call follows at once; each call
  # waits for it until it ends or the call does, and nothing listed after it starts meanwhile. It
  # is stopped at twice its estimate; a failed one starts again next call.
  local name=$1 est=$2; shift 2
  waits "$name" && return 0
  local at="$S/running/$name" rc before t0
  mkdir -p "$S/running"
  if [ ! -e "$at.pid" ]; then
    servers > "$at.before"
    date +%s > "$at.t0"
    echo "$name start, long ($(date +%T), estimate ${est}s)" >> "$S/logs/queue.txt"
    setsid bash -c 'sampled "$@"; echo $? > "$0.rc"' "$at" "$name" "$((est * 2))" "$@" < /dev/null > /dev/null 2>&1 &
    echo $! > "$at.pid"
  fi
  while [ ! -e "$at.rc" ] && [ $SECONDS -lt $END ]; do sleep 2; done
  if [ ! -e "$at.rc" ]; then
    HELD=$name
    echo "$name: running at $(date +%T) (pid $(cat "$at.pid")), next call" >> "$S/logs/queue.txt"
    pack
    return 0
  fi
  rc=$(cat "$at.rc") before=$(cat "$at.before") t0=$(cat "$at.t0")
  rm -f "$at".*
  ended "$name" "$rc" $(($(date +%s) - t0)) "$before"
  return 0
}

ag() {  # ag NAME ESTIMATE [ENV=VALUE...] -- FLAGS...: a `bench agentic` job writing $S/NAME, with
  # indexer scores of a real scale on dummy weights (SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit,
  # bench/common.py), as every agentic session has run since session 27; `ag_long`: as a `long` job
  agentic job "$@"
}

ag_long() { agentic long "$@"; }

agentic() {  # agentic RUNNER NAME ESTIMATE [ENV=VALUE...] -- FLAGS...
  local runner=$1 name=$2 est=$3; shift 3
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  $runner "$name" "$est" env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit ${envs[@]+"${envs[@]}"} $G bench agentic \
    --out "$S/$name" "$@"
}

pack() {  # $S (models and profiler dumps left out) as a split tar under $OUT, replacing the last
  local base; base=$(basename "$S")
  rm -f "$OUT/$base.tgz.part-"*
  tar czf "$S.tgz" -C "$(dirname "$S")" --exclude="$base/running" --exclude="$base/*/model" --exclude="$base/*/model-nextn" --exclude='*/profiles' --exclude='*.trace.json*' --exclude='trace.json' "$base"
  split -b 15M "$S.tgz" "$OUT/$base.tgz.part-"
}

finish() {
  cat "$S/logs/queue.txt"
  for f in "$S"/logs/*.txt; do
    case $f in *queue*|*install*|*nvidia-smi*) continue;; esac
    echo "== $f"; tail -4 "$f"
  done
  pack
  ls -la "$OUT"
}
