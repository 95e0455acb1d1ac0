"""What SGLang 0.5.23's chat door spends, per turn, turning a conversation into token ids, on the
agentic trace every flash-12 session since 27 replayed (sha256 821ea80f): the chat template rendered
to text, then `parallel_prompt_encode` (its default: chunks encoded by the Rust tokenizer's thread
pool), as `serving_chat._render_and_encode_chat_template` does for a text-only request. The whole
conversation is rendered and encoded again each turn. Run on the CPU machine, not the GPU host
(16 cores there): an order of magnitude, not the server's figure. Its output.txt was taken
beside a CI run on the 2 cores, where the encode fell back to one thread (it says so).

    .venv/bin/python benchmarks/results/cpu-2026-12-05-tokenize/tokenize_cost.py MODEL_DIR TRACE
"""
import json
import statistics
import sys
import time

from transformers import AutoTokenizer
from sglang.srt.entrypoints.openai.parallel_prompt_encode import parallel_prompt_encode

tok = AutoTokenizer.from_pretrained(sys.argv[1])
trace = json.load(open(sys.argv[2]))
rows = []  # (prompt tokens, render s, encode s)
for conv in trace["conversations"]:
    msgs = []
    for turn in conv:
        msgs += turn["messages"]
        t0 = time.perf_counter()
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        t1 = time.perf_counter()
        ids = parallel_prompt_encode(tok, text, {})
        t2 = time.perf_counter()
        rows.append((len(ids), t1 - t0, t2 - t1))
print(f"{len(rows)} turns, {sum(r[0] for r in rows):,} prompt tokens encoded in all, "
      f"{sum(r[1] + r[2] for r in rows):.1f} s")
for lo, hi in ((0, 32768), (32768, 65536), (65536, 98304), (98304, 1 << 30)):
    b = [r for r in rows if lo <= r[0] < hi]
    if b:
        span = f"{lo // 1024}K to {hi // 1024}K" if hi < 1 << 20 else f">= {lo // 1024}K"
        print(f"context {span:>11}: {len(b):>3} turns, median "
              f"render {statistics.median(r[1] for r in b) * 1e3:.1f} ms, "
              f"encode {statistics.median(r[2] for r in b) * 1e3:.1f} ms")
