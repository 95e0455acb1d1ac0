#!/usr/bin/env bash
# Session 18's device jobs on one H200: `bash benchmarks/results/h200-2026-12-02-session18/jobs.sh
# CALL_SECONDS [install]`, once per device call; the queue (done-markers, estimates, servers a
# stopped job left, the tar back) is scripts/device_queue.sh.
S=/tmp/s18; . scripts/device_queue.sh "$1" "${2:-}"

# issue 14: the side-by-side matrix with the shape tokenizer that SGLang's chat door encodes in
# parallel (session 17's change): (c) indexcache FSSSFSSSFSSS, (a) dsa all Full, (d) dsa native
# sharing, each at concurrency 1, 4 and 16 on one server, SGLang's default prefill graphs, unit
# indexer weights. Concurrency 1 replays 2 sessions one after another (--min-sessions 2), 4 four
# at once, 16 sixteen. A new trace: the tokenizer is new (the same conversations, new bytes).
AG=$S/ag
job ag-prep 60 bash -c "PYTHONPATH=/tmp/sg python3 -c \"from sglang_indexcache.bench import common; common.make_model('flash-12', '$AG/model')\" \
  && $G bench trace --tokenizer $AG/model --size 128k --sessions 16 --seed 0 --out $AG/trace.json && sha256sum $AG/trace.json"
agentic() {  # agentic NAME ESTIMATE CONFIG
  job $1 $2 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit $G bench agentic --out $AG --shape flash-12 \
    --model-path $AG/model --trace $AG/trace.json --configs $3 --concurrency 1 4 16 --min-sessions 2 \
    --prefill-graphs sglang
}
agentic ag-c 380 c   # first: the kernel cache restored by the install, timed by its server's start
# the kernels compiled so far (decode graphs up to 16 are new to the tracked cache); stays on the
# host until the last call copies it back
job jit-pack 40 bash -c "$G jit-pack /tmp/jit-cache.tgz && ls -la /tmp/jit-cache.tgz && tar tzf /tmp/jit-cache.tgz | wc -l"
agentic ag-a 330 a
agentic ag-d 330 d

# SGLang's default prefill graphs under the GPU tests (glm-5.2-8l): counted and key-checked, and
# prompt log-probabilities equal to upstream native sharing's, never run to the end so far
job gpu-bcg 330 $G test tests/test_gpu.py -k breakable_prefill
agentic ag-e 350 e
finish

# Call 6 ran outside the queue (315 s of device time left, gpu-bcg needing 330): (e) at
# concurrency 1 alone, then the state folder tarred into $OUT by hand:
#   timeout 240 env SGLANG_INDEXCACHE_BENCH_INDEXER_WEIGHTS=unit bash scripts/gpu_host.sh bench agentic \
#     --out /tmp/s18/ag --shape flash-12 --model-path /tmp/s18/ag/model --trace /tmp/s18/ag/trace.json \
#     --configs e --concurrency 1 --min-sessions 2 --prefill-graphs sglang > /tmp/s18/logs/ag-e1.txt 2>&1
