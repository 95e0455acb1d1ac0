"""Where a turn's time to first token goes: inside SGLang's scheduler, or outside it.

A turn's TTFT at the client holds the client's request, the HTTP server, the chat template and
the tokenization of the whole conversation again (SGLang's chat API gets every message each
turn), the hand-over to the scheduler, the scheduler's wait queue and the prefill forwards, and
the first token's way back. Only the queue and the forwards run the attention backend.

SGLang logs one `ReqTimeStats` line per request (`--enable-request-time-stats-logging`, which
`bench agentic` turns on): `queue_duration` (wait queue entry to the first forward) and
`forward_duration` (the first forward to the scheduler's last token). With the client's
per-request output, for each turn:

    outside   = e2e - queue - forward   (client to the wait queue, plus the last token's way back)
    scheduler = TTFT - outside          (= queue + forward - the client's first-to-last-token time)

`scheduler` is the queue and the prefill, plus the first token's way back less the last one's
(which cancel on average). The pairing of a log line to a turn is by prompt length, as
`bench agentic` pairs them (`common.time_stats`).

Finer, where the server also logged each finished request (`REQUEST_LOG_ARGS`, on in `bench
agentic` since session 34): SGLang's own timestamps of the request, in one clock, split the
server's TTFT into `STAGES`, which add up to the client's TTFT:

    tokenize  HTTP handler to the hand-over to the scheduler: chat template, tokenization
    handover  to the scheduler's wait queue: the ZMQ hop, the scheduler's next poll, its intake
              (SGLang stamps the hand-over after its send returns, so on a busy host the
              scheduler may have queued the request first: a few ms below 0)
    queue     the wait queue (the closed loop's other sessions' prefills)
    prefill   the first forward to the end of prefill (chunks and other requests' tokens included)
    return    the first token's way back to the HTTP server (detokenizer)
    client    the HTTP response and the client's own loop

`bench split FILES` prints the table; `bench agentic` keeps both per turn and per level.

Why: at concurrency 16 (sessions 28 to 33, flash-12) `outside` was 0.19 to 0.39 s of a turn's
0.63 to 0.84 s TTFT (medians per server), 0.25 to 0.63 s at >= 96K, and it ranked the servers'
>= 96K TTFT medians in every session (rank correlation 0.8 to 1.0): there, servers differed in
TTFT mostly by host time outside the scheduler, where no backend code runs.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from sglang_indexcache.bench import common
from sglang_indexcache.bench.common import LONG_CONTEXT

# SGLang's per-request log of each finished request, its timestamps in `meta_info`; level 0
# leaves the prompt and the output out
REQUEST_LOG_ARGS = ["--log-requests", "--log-requests-level", "0", "--log-requests-format", "json"]
STAGES = ("tokenize", "handover", "queue", "prefill", "return", "client")


def split(ttft_s: float, decode_s: float, queue_s: float, forward_s: float) -> tuple:
    """(scheduler, outside) seconds of one turn; `decode_s` is the client's first-to-last-token
    time, `queue_s` and `forward_s` the server's ReqTimeStats durations."""
    outside = ttft_s + decode_s - queue_s - forward_s
    return ttft_s - outside, outside


def finished_requests(log_text: str) -> dict:
    """prompt tokens -> `meta_info` of each `request.finished` line of a server's log
    (`REQUEST_LOG_ARGS`), health checks left out."""
    out = {}
    for line in log_text.splitlines():
        at = line.find('{"timestamp"')
        if at < 0 or '"request.finished"' not in line or "HEALTH_CHECK" in line:
            continue
        try:
            meta = json.loads(line[at:])["out"]["meta_info"]
        except (ValueError, KeyError, TypeError):
            continue
        out[meta.get("prompt_tokens")] = meta
    return out


def stages(meta: dict, ttft_s: float) -> dict | None:
    """One turn's `STAGES` in seconds from its `meta_info` and the client's TTFT: the server's
    five add up to its own first-token latency, `client` is the rest of the client's; None if
    a timestamp is missing."""
    keys = ("request_received_ts", "api_server_dispatch_finish_ts", "forward_entry_time", "queue_time",
            "prefill_finished_time", "first_token_latency")
    if any(meta.get(k) is None for k in keys):
        return None
    received, dispatched, entered, queue, prefilled, first = (float(meta[k]) for k in keys)
    queued_at = entered - queue
    return {"tokenize": dispatched - received, "handover": queued_at - dispatched, "queue": queue,
            "prefill": prefilled - entered, "return": received + first - prefilled, "client": ttft_s - first}


def annotate(rows: list, log_text: str | None = None) -> list:
    """Each row with `decode_s`, `server_queue_s` and `server_forward_s` gets `sched_ttft_s` and
    `outside_s` (None where the server's line was not paired or the turn failed); with the
    server's log of the same turns, `stages` where it logged the request (`REQUEST_LOG_ARGS`)."""
    done = finished_requests(log_text) if log_text else {}
    for r in rows:
        parts = (r.get("ttft_s"), r.get("decode_s"), r.get("server_queue_s"), r.get("server_forward_s"))
        ok = None not in parts and not r.get("error")
        r["sched_ttft_s"], r["outside_s"] = split(*parts) if ok else (None, None)
        meta = done.get(r.get("context"))
        if meta is not None and not r.get("error"):
            r["stages"] = stages(meta, r["ttft_s"])
    return rows


def summary(rows: list) -> dict:
    """Medians over the annotated rows, all turns and those at >= 96K; None where none."""
    def med(key, long_only=False):
        v = [r[key] for r in rows if r.get(key) is not None and (not long_only or r["context"] >= LONG_CONTEXT)]
        return statistics.median(v) if v else None

    out = {"sched_ttft_median_s": med("sched_ttft_s"), "sched_ttft_long_median_s": med("sched_ttft_s", True),
           "outside_median_s": med("outside_s"), "outside_long_median_s": med("outside_s", True)}
    timed = [r for r in rows if r.get("stages")]
    for name, sel in (("", timed), ("long_", [r for r in timed if r["context"] >= LONG_CONTEXT])):
        for stage in STAGES:  # means: they add up to the mean TTFT of the same turns
            out[f"part_{stage}_{name}mean_s"] = statistics.fmean(r["stages"][stage] for r in sel) if sel else None
    out["parts_turns"] = len(timed)
    return out


def rows_from_files(result_path, log_path) -> list:
    """Annotated rows of a committed replay: bench_serving's per-request file (plain or gzipped)
    and the server's log of the same run (`TAG-server.log[.gz]`), paired by prompt length."""
    result = common.bench_serving_result(result_path)
    log_text = common.read_text(log_path)
    stats = common.time_stats(log_text)
    rows = []
    for i, n in enumerate(result["input_lens"]):
        st = stats.get(n)
        rows.append({"context": n, "ttft_s": result["ttfts"][i], "decode_s": sum(result["itls"][i] or []),
                     "server_queue_s": st[2] if st else None, "server_forward_s": st[3] if st else None,
                     "error": result["errors"][i] or None})
    return annotate(rows, log_text)


def server_log(result_path) -> Path:
    """The server log beside a replay's file: `c-c16.jsonl.gz` -> `c-server.log.gz` (or `.log`)."""
    p = Path(result_path)
    tag = p.name.split("-", 1)[0]
    for name in (f"{tag}-server.log.gz", f"{tag}-server.log"):
        if (p.parent / name).exists():
            return p.parent / name
    raise FileNotFoundError(f"no {tag}-server.log[.gz] beside {p}")


def ranks(values: list) -> list:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(x: list, y: list) -> float:
    """Rank correlation (Pearson's over the ranks)."""
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else float("nan")


def table(paths: list) -> str:
    """`bench split FILE...`: per replay, TTFT medians (all turns, >= 96K) split into the
    scheduler's part and the rest; per configuration (the file name's tag), medians over its
    replays and their ratio over (d)'s; and how the rest ranks with TTFT over the replays."""
    lines = [f"{'replay':<24} {'paired':>7}   TTFT med / >=96K   scheduler med / >=96K   outside med / >=96K"]
    got = []
    for p in paths:
        rows = rows_from_files(p, server_log(p))
        ok = [r for r in rows if not r["error"]]
        long_ = [r["ttft_s"] for r in ok if r["context"] >= LONG_CONTEXT]
        s = {"ttft_median_s": statistics.median(r["ttft_s"] for r in ok),
             "ttft_long_median_s": statistics.median(long_) if long_ else None, **summary(rows)}
        got.append((p, Path(p).name.split("-", 1)[0], s))
        paired = sum(r["outside_s"] is not None for r in rows)
        lines.append(f"{'/'.join(Path(p).parts[-2:]):<24} {f'{paired}/{len(rows)}':>7}   " + "   ".join(
            f"{_f(s[a]):>8} / {_f(s[b]):<7}" for a, b in (("ttft_median_s", "ttft_long_median_s"),
                                                   ("sched_ttft_median_s", "sched_ttft_long_median_s"),
                                                   ("outside_median_s", "outside_long_median_s"))))
        if s["parts_turns"]:
            lines.append(f"    {s['parts_turns']} turns' stages, mean s (>= 96K): " + part_line(s))
    figs = ("ttft_median_s", "ttft_long_median_s", "sched_ttft_median_s", "sched_ttft_long_median_s")
    by_tag = {}
    for _, tag, s in got:
        by_tag.setdefault(tag, []).append(s)
    med = {tag: {f: statistics.median(v) if (v := [s[f] for s in ss if s[f] is not None]) else None for f in figs}
           for tag, ss in by_tag.items()}
    for tag in sorted(med):
        line = f"{tag} ({len(by_tag[tag])} replays), medians: " + ", ".join(f"{f} {_f(med[tag][f])}" for f in figs)
        if tag != "d" and "d" in med:  # times: theirs over ours, > 1 is faster
            line += "; over d: " + ", ".join(f"{f} {med['d'][f] / med[tag][f]:.3f}" for f in figs
                                             if med[tag][f] and med["d"][f])
        lines.append(line)
    pairs = [(s["outside_long_median_s"], s["ttft_long_median_s"]) for _, _, s in got
             if s["outside_long_median_s"] is not None and s["ttft_long_median_s"] is not None]
    if len(pairs) >= 3:
        lines.append(f"rank correlation over the {len(pairs)} replays, outside against TTFT at >= 96K: "
                     f"{spearman(*zip(*pairs)):.2f}")
    return "\n".join(lines)


def part_line(s: dict) -> str:
    """`STAGES` means of a summary (`summary`), all turns and (>= 96K)."""
    return ", ".join(f"{k} {_f(s[f'part_{k}_mean_s'])} ({_f(s[f'part_{k}_long_mean_s'])})" for k in STAGES)


def _f(v) -> str:
    return f"{v:.3f}" if v is not None else "  -  "


def table_cmd(args) -> int:
    print(table(args.files))
    return 0
