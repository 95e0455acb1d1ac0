"""One long turn through each of the server's three doors, timed (`bench agentic`'s probe).

Our own client, because neither bench_serving nor the server splits a turn's time by where it
enters: the chat door (`/v1/chat/completions`: template, tokenization, scheduling, forward), the
text door (`/generate` with the templated text) and the token-id door (`/generate` with ids:
scheduling and forward only). The server's own side of each request (SGLang's ReqTimeStats
forward time, `--enable-request-time-stats-logging`) is read from its log, so a door's time
splits into the scheduler's forward and everything around it; `profile` records one more
token-id request under SGLang's profiler (GPU busy time against the forward's span)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from sglang_indexcache.bench import common


def probe_turn(model: Path, trace: dict) -> tuple:
    """The probe's one long turn, three ways: session 0's history up to its last turn
    (replies left out) as chat messages, as the templated text, and as its token ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    msgs = [m for turn in trace["conversations"][0] for m in turn["messages"]]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return msgs, text, tok(text, add_special_tokens=False)["input_ids"]


def turn_probe(srv, model: Path, turn: tuple, repeats: int = 3, *, cuda: bool = True,
               profile_dir: Path | None = None, settle_s: float = 0.5) -> dict:
    """Where a long turn's time goes before its new tokens, by the door it enters: `turn`
    (`probe_turn`) sent once cold through the chat door, then `repeats` times through each
    door, one new token each; medians. Every repeat hits the radix cache on all but the last
    page, so the times are per-turn overhead at this context with almost no new tokens.

    `forward_s`: the same medians of the server's forward time per door, from its log's
    ReqTimeStats lines (None when the log does not hold one line per request, e.g. without
    `--enable-request-time-stats-logging`). `profile_dir`: one more token-id request under
    SGLang's profiler; `profile` keeps its kernel table (the trace file stays in the folder)."""
    msgs, text, ids = turn
    greedy = {"temperature": 0.0, "max_new_tokens": 1}
    log = getattr(srv, "log", None)
    mark = len(log.read_text(errors="replace")) if log is not None and log.exists() else None

    def timed(path, body):
        t0 = time.perf_counter()
        srv.post(path, body, timeout=600)
        return time.perf_counter() - t0

    chat = ("/v1/chat/completions", {"model": str(model), "messages": msgs, "max_completion_tokens": 1, "temperature": 0.0})
    doors = {"chat_s": chat, "text_s": ("/generate", {"text": text, "sampling_params": greedy}),
             "ids_s": ("/generate", {"input_ids": ids, "sampling_params": greedy})}
    out = {"context": len(ids), "cold_chat_s": timed(*chat)}
    times = {k: [] for k in doors}
    sent = ["cold_chat_s"]
    for _ in range(repeats):
        for k, door in doors.items():
            times[k].append(timed(*door))
            sent.append(k)
    out.update({k: statistics.median(v) for k, v in times.items()})
    if mark is not None:
        time.sleep(settle_s)  # the last request's ReqTimeStats line
        out.update(forward_by_door(log.read_text(errors="replace")[mark:], sent))
    if profile_dir is not None:
        from sglang_indexcache.bench.profile import profile_forwards

        trace, table = profile_forwards(srv, Path(profile_dir), "probe", cuda=cuda, timeout=600,
                                        run=lambda: srv.post(*doors["ids_s"], timeout=600))
        out["profile"] = {"trace": trace, **table}
    return out


def forward_by_door(log_text: str, sent: list) -> dict:
    """The server's forward time of each request `sent` named (in the order sent, one request at
    a time), from the ReqTimeStats lines of `log_text`: {"forward_s": median per door (the cold
    one as is), "forward_all_s": every request's}; None for both unless the log has exactly one
    line per request."""
    lines = [common.sec(m[5], m[6]) for m in common.TIME_STATS.findall(log_text)]
    if len(lines) != len(sent):
        return {"forward_s": None, "forward_all_s": None}
    per: dict = {}
    for door, fwd in zip(sent, lines):
        per.setdefault(door, []).append(fwd)
    return {"forward_s": {k: statistics.median(v) for k, v in per.items()}, "forward_all_s": per}
