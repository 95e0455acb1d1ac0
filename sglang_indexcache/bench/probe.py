"""One long turn through each of the server's three doors, timed (`bench agentic`'s probe).

Our own client, because neither bench_serving nor the server splits a turn's time by where it
enters: the chat door (`/v1/chat/completions`: template, tokenization, scheduling, forward), the
text door (`/generate` with the templated text) and the token-id door (`/generate` with ids:
scheduling and forward only)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def probe_turn(model: Path, trace: dict) -> tuple:
    """The probe's one long turn, three ways: session 0's history up to its last turn
    (replies left out) as chat messages, as the templated text, and as its token ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    msgs = [m for turn in trace["conversations"][0] for m in turn["messages"]]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return msgs, text, tok(text, add_special_tokens=False)["input_ids"]


def turn_probe(srv, model: Path, turn: tuple, repeats: int = 3) -> dict:
    """Where a long turn's time goes before its new tokens, by the door it enters: `turn`
    (`probe_turn`) sent once cold through the chat door, then `repeats` times through each
    door, one new token each; medians. Every repeat hits the radix cache on all but the last
    page, so the times are per-turn overhead at this context with almost no new tokens."""
    msgs, text, ids = turn
    greedy = {"temperature": 0.0, "max_new_tokens": 1}

    def timed(path, body):
        t0 = time.perf_counter()
        srv.post(path, body, timeout=600)
        return time.perf_counter() - t0

    chat = ("/v1/chat/completions", {"model": str(model), "messages": msgs, "max_completion_tokens": 1, "temperature": 0.0})
    doors = {"chat_s": chat, "text_s": ("/generate", {"text": text, "sampling_params": greedy}),
             "ids_s": ("/generate", {"input_ids": ids, "sampling_params": greedy})}
    out = {"context": len(ids), "cold_chat_s": timed(*chat)}
    times = {k: [] for k in doors}
    for _ in range(repeats):
        for k, door in doors.items():
            times[k].append(timed(*door))
    out.update({k: statistics.median(v) for k, v in times.items()})
    return out
