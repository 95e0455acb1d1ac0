"""`make demo`: the tiny GLM-MoE-DSA model served on CPU with IndexCache, under a small
long-context agentic workload through SGLang's OpenAI-compatible API.

Several conversations run side by side; each turn appends a tool-output-like document
and asks for a short reply, so contexts grow far past index_topk (sparse attention
matters) and every turn after the first re-reads its conversation's prefix from the
radix cache. At the end: per-turn latency and cached prompt tokens, the schedule, and
the indexer calls IndexCache saved (counted by the backend, not estimated).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import statistics
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = "models/glm-tiny"
# glm-tiny has indexer weights on layers 0, 1, 2 and 6: keep two of them, share the rest.
DEFAULT_PATTERN = "FSSSSSFS"


def _documents(n: int, words: int) -> list:
    """Real text, offline: CPython's pydoc topics, cut into `words`-word pieces."""
    from pydoc_data.topics import topics

    text = " ".join(topics[k] for k in sorted(topics)).split()
    return [" ".join(text[i * words : (i + 1) * words]) for i in range(n)]


def _chat(srv, messages: list, max_tokens: int) -> tuple:
    t0 = time.monotonic()
    out = srv.post(
        "/v1/chat/completions",
        {"model": "default", "messages": messages, "max_tokens": max_tokens, "temperature": 0.0},
    )
    latency = time.monotonic() - t0
    usage = out["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0
    return out["choices"][0]["message"]["content"], latency, usage["prompt_tokens"], cached


def _conversation(srv, cid: int, turns: int, docs: list, max_tokens: int) -> list:
    messages = [{"role": "system", "content": f"You are agent {cid}. Read each tool result and summarise it."}]
    rows = []
    for turn in range(turns):
        doc = docs[(cid * turns + turn) % len(docs)]
        messages.append({"role": "user", "content": f"Tool result {turn + 1}:\n{doc}\nWhat matters here?"})
        reply, latency, prompt_tokens, cached = _chat(srv, messages, max_tokens)
        messages.append({"role": "assistant", "content": reply})
        rows.append(dict(conversation=cid, turn=turn + 1, prompt_tokens=prompt_tokens, cached_tokens=cached, latency_s=latency))
    return rows


def run(model: str, pattern: str, conversations: int, turns: int, words: int, max_tokens: int, log_dir: Path) -> dict:
    from sglang_indexcache.server import Server
    from sglang_indexcache.tiny_model import make_model

    if not (Path(model) / "config.json").exists():
        print(f"generating the tiny model in {model} ...", flush=True)
        make_model("glm-tiny", model)
    log_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "--attention-backend", "indexcache",
        "--index-cache-pattern", pattern,
        "--dtype", "float32",
        "--max-total-tokens", "65536",
        "--enable-cache-report",
        "--sleep-on-idle",
    ]
    t0 = time.monotonic()
    stats_file = log_dir / "indexcache-stats.json"
    srv = Server(model, args, log=log_dir / "server.log", stats_file=stats_file)
    print(f"starting: python -m sglang.launch_server --model-path {model} --device cpu {' '.join(args)}", flush=True)
    with srv:
        print(f"server up in {srv.startup_s:.1f} s (log: {srv.log})", flush=True)
        schedule = [line for line in srv.log.read_text().splitlines() if "IndexCache schedule" in line or "pattern:" in line]
        docs = _documents(conversations * turns, words)
        t_work = time.monotonic()
        with cf.ThreadPoolExecutor(conversations) as pool:
            futures = [pool.submit(_conversation, srv, c, turns, docs, max_tokens) for c in range(conversations)]
            rows = [r for f in futures for r in f.result()]
        work_s = time.monotonic() - t_work
        stats = srv.stats()
    total_s = time.monotonic() - t0
    return dict(rows=rows, stats=stats, schedule=schedule, work_s=work_s, total_s=total_s, pattern=pattern)


def report(result: dict) -> str:
    rows = sorted(result["rows"], key=lambda r: (r["conversation"], r["turn"]))
    lines = ["", "conv turn  prompt_tokens  cached_tokens  latency_s"]
    lines += [
        f"{r['conversation']:4d} {r['turn']:4d}  {r['prompt_tokens']:13d}  {r['cached_tokens']:13d}  {r['latency_s']:9.2f}"
        for r in rows
    ]
    later = [r for r in rows if r["turn"] > 1]
    prompt = sum(r["prompt_tokens"] for r in rows)
    cached = sum(r["cached_tokens"] for r in rows)
    lines += [
        "",
        f"turns: {len(rows)}; median latency {statistics.median(r['latency_s'] for r in rows):.2f} s; "
        f"prompt tokens {prompt}, served from the radix cache {cached} ({100 * cached / max(prompt, 1):.0f}%; "
        f"turns after the first: {sum(r['cached_tokens'] for r in later)} of {sum(r['prompt_tokens'] for r in later)})",
    ]
    lines += [s.split("] ", 1)[-1] for s in result["schedule"][:2]]
    st = result["stats"]
    calls = st["indexer_runs"] + st["indexer_skips"]
    lines += [
        f"indexer: {st['forwards']} forwards, ran {st['indexer_runs']} layer-calls, skipped {st['indexer_skips']} "
        f"({100 * st['indexer_skips'] / max(calls, 1):.0f}% of indexer calls saved by IndexCache, pattern {st['pattern']})",
        f"workload {result['work_s']:.1f} s, demo total {result['total_s']:.1f} s",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sglang_indexcache.demo", description=__doc__.splitlines()[0])
    p.add_argument("--model-path", default=DEFAULT_MODEL)
    p.add_argument("--pattern", default=DEFAULT_PATTERN)
    p.add_argument("--conversations", type=int, default=4)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--words", type=int, default=120, help="words of tool output appended per turn")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--log-dir", default=None, help="server log and stats (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="indexcache-demo-"))
    result = run(args.model_path, args.pattern, args.conversations, args.turns, args.words, args.max_tokens, log_dir)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
