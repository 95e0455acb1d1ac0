"""Each forward's GPU span, from SGLang's own forward pass metrics, beside the agentic replay.

SGLang 0.5.23's `--enable-forward-pass-metrics` times every forward of the scheduler on the GPU
(`DeviceTimer`: from the forward's first recorded start to its last end on the stream, gaps
included) and publishes one `ForwardPassMetrics` per forward over ZMQ PUB
(`sglang/srt/observability/forward_pass_metrics.py`): that span as `wall_time`, and what the
forward carried (prefill requests, their new tokens and cached KV tokens, decode requests and
their KV tokens). Nothing in SGLang records them to a file; `Recorder` is the subscriber, in
the benchmark's process, reading each message with SGLang's own decoder (`integration/fpm.py`).

What it is for: at concurrency 16 a server's figures move with its host (session 28: (c) and
(d), same kernels in decode, differed by 3.5 % on sessions/min). Summed GPU spans of the same
replay tell GPU work from host time: a configuration whose spans sum to less but whose replay
takes longer lost it on the host.
"""

from __future__ import annotations

import gzip
import json
import statistics
import threading
import time
from typing import Optional


def endpoint_args(base: str) -> list:
    """The server flags that publish on `base` (SGLang binds `base.<dp_rank>`)."""
    return ["--enable-forward-pass-metrics", "--forward-pass-metrics-ipc-name", base]


class Recorder:
    """Subscribes to `endpoint` until closed; `rows` holds one dict per message received, in
    order. Connect it before the forwards to record (a ZMQ subscriber misses what was published
    before it joined)."""

    def __init__(self, endpoint: str):
        import zmq

        self.endpoint = endpoint
        self.rows: list = []
        self.error: Optional[BaseException] = None  # what stopped the subscriber, if anything
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fpm-recorder")
        self._thread.start()

    def _run(self) -> None:
        import zmq

        from sglang_indexcache.integration.fpm import decode

        try:
            while not self._stop.is_set():
                if not self._sock.poll(100):
                    continue
                _topic, _seq, payload = self._sock.recv_multipart(flags=zmq.NOBLOCK)
                row = decode(payload)
                row["received"] = time.monotonic()
                self.rows.append(row)
        except Exception as e:  # e.g. a publisher of another schema version: say so, not an empty level
            self.error = e

    def check(self) -> None:
        """Raise if the subscriber stopped on an error (its rows end there)."""
        if self.error is not None:
            raise RuntimeError(f"forward pass metrics from {self.endpoint}: {self.error!r}") from self.error

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close(linger=0)
        self._ctx.term()


def split(rows: list) -> tuple:
    """(forwards that did work, those with a prefill, decode-only ones): idle heartbeats (span 0,
    nothing scheduled) left out."""
    work = [r for r in rows if r["wall_time"] > 0]
    prefill = [r for r in work if r["scheduled_requests"]["num_prefill_requests"] > 0]
    decode = [r for r in work if r["scheduled_requests"]["num_prefill_requests"] == 0]
    return work, prefill, decode


def summarize(rows: list) -> Optional[dict]:
    """GPU spans of a level's forwards, split into forwards with a prefill (extends, mixed or
    not) and decode-only ones; idle heartbeats (span 0, nothing scheduled) left out. `dropped`:
    gaps in the publisher's counter (its queue or socket dropped messages)."""
    if not rows:
        return None
    ids = [r["counter_id"] for r in rows]
    work, prefill, decode = split(rows)

    def part(rs: list) -> dict:
        spans = [r["wall_time"] for r in rs]
        s = [r["scheduled_requests"] for r in rs]
        return {"forwards": len(rs), "gpu_s": sum(spans),
                "median_ms": statistics.median(spans) * 1e3 if spans else None,
                "prefill_tokens": sum(x["sum_prefill_tokens"] for x in s),
                "prefill_kv_tokens": sum(x["sum_prefill_kv_tokens"] for x in s),
                "decode_requests": sum(x["num_decode_requests"] for x in s)}

    return {"messages": len(rows), "dropped": (max(ids) - min(ids) + 1) - len(set(ids)),
            "gpu_s": sum(r["wall_time"] for r in work), "prefill": part(prefill), "decode": part(decode)}


def spans(rows: list) -> Optional[dict]:
    """A replay's forwards as a table row (`bench spans`): `summarize`'s totals, plus what tells
    GPU work from host time in decode, where every server runs the same CUDA graphs: GPU span
    per decoded token, and the 10th, 50th and 90th percentile span of the forwards at the
    replay's largest decode batch (the floor is the graph's GPU time; the rest, host time the
    forward waited on). Those forwards' spans are also fitted against the context they read
    (least squares on `sum_decode_kv_tokens`): `fixed_ms` at no context and `ms_per_mtoken`, so
    two servers whose batches held different contexts compare at equal context (session 31)."""
    g = summarize(rows)
    if g is None:
        return None
    dec = split(rows)[2]
    tokens = g["decode"]["decode_requests"]
    g["decode"]["ms_per_token"] = g["decode"]["gpu_s"] / tokens * 1e3 if tokens else None
    if dec:
        top, at_top = largest_batch(dec)
        full = [r["wall_time"] * 1e3 for r in at_top]
        p10, p90 = _p10_p90(full)
        g["decode"]["full_batch"] = {"batch": top, "forwards": len(full), "p10_ms": p10,
                                     "median_ms": statistics.median(full), "p90_ms": p90}
        context = [r["scheduled_requests"].get("sum_decode_kv_tokens", -1) / 1e6 for r in at_top]
        if min(context) >= 0 and len(set(context)) > 1:
            fit = statistics.linear_regression(context, [r["wall_time"] * 1e3 for r in at_top])
            g["decode"]["full_batch"].update(fixed_ms=fit.intercept, ms_per_mtoken=fit.slope,
                                             context_median=statistics.median(context) * 1e6)
        gap = host_gaps(rows, top)
        if gap:
            g["decode"]["full_batch"].update(gap_pairs=len(gap), gap_median_ms=statistics.median(gap),
                                             gap_p90_ms=_p10_p90(gap)[1])
    return g


def largest_batch(decode: list) -> tuple:
    """(the largest decode batch among decode-only forwards, the forwards of that batch)."""
    top = max(r["scheduled_requests"]["num_decode_requests"] for r in decode)
    return top, [r for r in decode if r["scheduled_requests"]["num_decode_requests"] == top]


def _p10_p90(values: list) -> tuple:
    """The 10th and 90th percentiles (inclusive method; one value is both)."""
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[0], q[-1]


GAP_LIMIT_S = 0.05  # a longer interval is the server waiting for work, not a step


def host_gaps(rows: list, batch: int) -> list:
    """What the scheduler's loop took beyond the GPU, in ms, at decode batch `batch`: for each
    pair of consecutive decode-only forwards of that batch (consecutive counter ids), the time
    between their messages' arrival minus the later one's span. SGLang publishes once per loop
    step, after processing the step's result (`Scheduler.process_batch_result`), so the interval
    is the loop's period: near the span when the GPU paces the loop, longer by the host time the
    GPU waited for. Needs the recorder's `received` stamps (absent: no pairs). A host that is late
    inside the forward, after its first GPU timestamp, lengthens the span instead (the
    `fixed_ms` of the fit), so this is a lower bound on host time (session 31's first (c) server:
    0.57 ms median at batch 16, others 0.03 to 0.19)."""
    out = []
    for a, b in zip(rows, rows[1:]):
        if b["counter_id"] != a["counter_id"] + 1 or "received" not in a or "received" not in b:
            continue
        sa, sb = a["scheduled_requests"], b["scheduled_requests"]
        if (sa["num_prefill_requests"] or sb["num_prefill_requests"] or sa["num_decode_requests"] != batch
                or sb["num_decode_requests"] != batch or b["wall_time"] <= 0):
            continue
        interval = b["received"] - a["received"]
        if 0 <= interval < GAP_LIMIT_S:
            out.append((interval - b["wall_time"]) * 1e3)
    return out


def _prefill_work(r: dict) -> tuple:
    """A prefill-only forward's regressors: 1, its new tokens, and the query-key pairs its
    indexer and attention score in millions (each new token reads the cached context and the new
    tokens before it: new x (cached + new / 2))."""
    s = r["scheduled_requests"]
    n, kv = s["sum_prefill_tokens"], s["sum_prefill_kv_tokens"]
    return 1.0, float(n), n * (kv + n / 2) / 1e6


def _decode_work(r: dict) -> tuple:
    """A decode-only forward's regressors: 1 and the context its batch reads, in millions."""
    return 1.0, r["scheduled_requests"].get("sum_decode_kv_tokens", 0) / 1e6


def work_ratios(replays: list) -> list:
    """Each replay's GPU time against a work model fitted over all of them: a list of
    {"prefill": r, "decode": r} (None where it does not apply). Replays of one trace at one
    concurrency still differ in how the scheduler cut their work: session 33's eight servers ran
    187 to 219 prefill forwards and 6,321 to 7,151 decode forwards with 783K to 926K median
    context. Least squares over every replay's prefill-only forwards (span = a + b new +
    c pairs, `_prefill_work`) and over the decode-only forwards at each replay's largest batch
    (span = a + b context, per batch size, only where two or more replays share it) give what
    each forward should have taken on a server of the group's average speed; a replay's ratio is
    its summed spans over their summed prediction: 1.05 is 5 % slower than the group at equal
    work. Forwards mixing prefill and decode are left out of both."""
    import numpy as np

    parts = []  # (prefill-only forwards, decode-only forwards at the largest batch, that batch)
    for rows in replays:
        _, prefill, decode = split(rows)
        top, at_top = largest_batch(decode) if decode else (0, [])
        parts.append(([r for r in prefill if r["scheduled_requests"]["num_decode_requests"] == 0], at_top, top))

    def ratios(groups: list, regressors) -> list:
        x = [np.array([regressors(r) for r in g], dtype=float) for g in groups]
        fit_x = np.vstack(x)
        if fit_x.shape[0] <= fit_x.shape[1] or np.linalg.matrix_rank(fit_x) < fit_x.shape[1]:
            return [None] * len(groups)
        coef = np.linalg.lstsq(fit_x, np.array([r["wall_time"] for g in groups for r in g]), rcond=None)[0]
        predicted = [float((xg @ coef).sum()) for xg in x]
        return [sum(r["wall_time"] for r in g) / p if p > 0 else None for g, p in zip(groups, predicted)]

    result = [{"prefill": None, "decode": None} for _ in replays]
    usable = [i for i, (pre, _, _) in enumerate(parts) if pre]
    if len(usable) >= 2:
        for i, ratio in zip(usable, ratios([parts[i][0] for i in usable], _prefill_work)):
            result[i]["prefill"] = ratio
    for top in {t for _, _, t in parts if t > 0}:
        same = [i for i, (_, _, t) in enumerate(parts) if t == top]
        if len(same) >= 2:
            for i, ratio in zip(same, ratios([parts[i][1] for i in same], _decode_work)):
                result[i]["decode"] = ratio
    return result


def read_replay(path) -> list:
    """The forward messages of one replay, as the agentic benchmark wrote them (STEM-fpm.jsonl.gz)."""
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def spans_table(paths: list) -> str:
    """`bench spans FILE...`: one line per STEM-fpm.jsonl.gz file the agentic benchmark wrote;
    with two or more files, each one's GPU time against the group's at equal work (`work_ratios`)."""
    lines = ["prefill s (forwards)  decode s (forwards)  ms/decoded token  largest batch: p10 / median / p90 ms"
             "  fit: ms + ms per M context tokens (median context)  host gap: median / p90 ms"
             "  at equal work: prefill / decode  file"]
    replays = [read_replay(path) for path in paths]
    equal = work_ratios(replays)
    for path, rows, eq in zip(paths, replays, equal):
        g = spans(rows)
        if g is None:
            raise SystemExit(f"{path}: no forwards")
        p, d = g["prefill"], g["decode"]
        fb = d.get("full_batch")
        batch = f"bs {fb['batch']}: {fb['p10_ms']:.2f} / {fb['median_ms']:.2f} / {fb['p90_ms']:.2f}" if fb else "-"
        fit = (f"{fb['fixed_ms']:.2f} + {fb['ms_per_mtoken']:.2f} ({fb['context_median'] / 1e3:.0f}K)"
               if fb and "fixed_ms" in fb else "-")
        gap = f"{fb['gap_median_ms']:.2f} / {fb['gap_p90_ms']:.2f}" if fb and "gap_median_ms" in fb else "-"
        per_token = f"{d['ms_per_token']:.3f}" if d["ms_per_token"] is not None else "-"
        work = " / ".join(f"{eq[k]:.3f}" if eq[k] is not None else "-" for k in ("prefill", "decode"))
        lines.append(f"{p['gpu_s']:7.2f} ({p['forwards']:4d})       {d['gpu_s']:7.2f} ({d['forwards']:5d})"
                     f"     {per_token:>8}         {batch}  {fit}  {gap}  {work}  {path}"
                     + (f"  ({g['dropped']} dropped)" if g["dropped"] else ""))
    return "\n".join(lines)


def spans_cmd(args) -> int:
    print(spans_table(args.files))
    return 0
