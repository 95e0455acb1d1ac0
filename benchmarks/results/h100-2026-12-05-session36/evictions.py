"""What a (d) server's radix cache held during a concurrency-16 replay of session 27's trace,
from the server's own log (the replay begins at bench_serving's last /flush_cache): session 36's
H100 (stopped by the device call's end) and session 33's H200 (the whole replay).

    D=benchmarks/results
    python $D/h100-2026-12-05-session36/evictions.py $D/h100-2026-12-05-session36/fl-d1-d-server.log.gz \
        $D/h200-2026-12-05-session33/fl-d1/d-server.log.gz
"""

import re
import statistics
import sys

from sglang_indexcache.bench.common import TIME_STATS, kv_pool_tokens, read_text


def report(path: str) -> None:
    text = read_text(path)
    pool = kv_pool_tokens(text)
    replay = text[text.rindex("POST /flush_cache"):]
    stamp = r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\]"
    times = re.findall(stamp, replay)
    prefills = re.findall(r"Prefill batch, #new-seq: (\d+), #new-token: (\d+), #cached-token: (\d+), token usage: ([0-9.]+)",
                          replay)
    done = [(int(m[0]), int(m[1])) for m in TIME_STATS.findall(replay)]
    cold = [p for p in prefills if int(p[2]) == 0]
    print(f"KV pool {pool:,} tokens; replay logged from {times[0]} to {times[-1]}")
    print(f"{len(done)} requests finished: {sum(a for a, _ in done):,} prompt tokens, "
          f"{sum(b for _, b in done):,} of them cached ({100 * sum(b for _, b in done) / sum(a for a, _ in done):.1f} %)")
    print(f"{len(prefills)} prefill batches, {sum(int(p[1]) for p in prefills):,} tokens computed; "
          f"{len(cold)} with no cached token ({sum(int(p[1]) for p in cold):,} tokens)")
    print(f"pool usage at a prefill: median {statistics.median(float(p[3]) for p in prefills):.2f}, "
          f"max {max(float(p[3]) for p in prefills):.2f}")


for path in sys.argv[1:]:
    print(path)
    report(path)
