"""`make soak`: a CPU server under mixed agentic traffic with aborts, disconnects and bad requests.

Sessions grow a conversation turn by turn (a shared system prefix, then tool results and
answers appended), so the radix cache and the per-forward store see prefix hits, chunked
re-prefills and concurrent batches. Each turn, drawn from a fixed seed, is one of:

- ``ok``: a greedy request that must succeed; its (prompt, answer) is kept;
- ``abort``: a long request cancelled through SGLang's ``/abort_request`` while it runs;
- ``hangup``: a client that reads two streamed chunks, or waits 0.1-0.5 s, and hangs up;
- ``bad``: a malformed request that must get a 4xx.

A background client calls ``/flush_cache`` now and then (SGLang refuses while busy). At the
end the server must be healthy, every kept answer must equal a solo rerun on an idle, flushed
server, and the indexer counters must still be runs = Full x forwards. Loopback only.

    python -m sglang_indexcache.soak --model-path models/deepseek-tiny --pattern FSSFSS --duration 120
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from sglang_indexcache.server import Server

ACTIONS = (("ok", 0.6), ("abort", 0.15), ("hangup", 0.15), ("bad", 0.1))


def _gen(ids, max_new: int, rid: str | None = None, **extra) -> dict:
    body = {"input_ids": ids, "sampling_params": {"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True}}
    if rid:
        body["rid"] = rid
    return body | extra


def bad_requests(vocab: int, context: int) -> list:
    """(name, path, body or raw bytes): each must be refused with a 4xx."""
    return [
        ("id past the vocabulary", "/generate", _gen([5, vocab + 7], 4)),
        ("negative id", "/generate", _gen([-1, 5], 4)),
        ("float id", "/generate", _gen([5, 2.5], 4)),
        ("negative max_new_tokens", "/generate", _gen([5, 6], -3)),
        ("prompt longer than the context", "/generate", _gen([7] * (context + 10), 4)),
        ("not JSON", "/generate", b"{input_ids: "),
        ("bad id on the OpenAI route", "/v1/completions", {"model": "x", "prompt": [5, vocab], "max_tokens": 4}),
    ]


class Soak:
    def __init__(self, srv: Server, *, vocab: int, context: int, seed: int = 0, sessions: int = 6):
        self.srv, self.vocab, self.context, self.seed, self.sessions = srv, vocab, context, seed, sessions
        self.lock = threading.Lock()
        self.counts = collections.Counter()  # outcome classes
        self.unexpected: list = []  # (class, detail): anything the contract does not allow
        self.kept: list = []  # (prompt, max_new, answer) of the ok turns

    def _note(self, outcome: str, problem: str | None = None) -> None:
        with self.lock:
            self.counts[outcome] += 1
            if problem:
                self.unexpected.append((outcome, problem[:300]))

    def _tokens(self, rng: random.Random, n: int) -> list:
        return [rng.randrange(5, self.vocab - 5) for _ in range(n)]

    def _going(self, deadline: float, min_ok: int, hard: float) -> bool:
        """Load continues to the deadline, then (on a slow machine) until `min_ok` answers were
        kept, never past `hard`."""
        now = time.monotonic()
        with self.lock:
            short = self.counts["ok"] < min_ok
        return now < deadline or (short and now < hard)

    def _session(self, sid: int, going, system: list) -> None:
        rng = random.Random(self.seed * 1000 + sid)
        convo, turn = system + self._tokens(rng, 40), 0
        names, weights = zip(*ACTIONS)
        bad = bad_requests(self.vocab, self.context)
        while going():
            turn += 1
            if len(convo) > self.context * 0.6:  # a new task in the same session
                convo = system + self._tokens(rng, 40)
            action = rng.choices(names, weights)[0]
            if action == "ok":
                n = rng.randrange(4, 24)
                status, text = self.srv.request("/generate", _gen(convo, n))
                if status != 200:
                    self._note("ok failed", f"HTTP {status}: {text}")
                    continue
                out = json.loads(text)["output_ids"]
                with self.lock:
                    self.kept.append((list(convo), n, out))
                self._note("ok")
                convo = convo + out + self._tokens(rng, rng.randrange(10, 60))
            elif action == "abort":
                self._abort(rng, f"soak-{self.seed}-{sid}-{turn}", convo)
            elif action == "hangup":
                self._hangup(rng, convo)
            else:
                name, path, body = rng.choice(bad)
                raw = body if isinstance(body, bytes) else None
                status, text = self.srv.request(path, None if raw else body, raw=raw)
                ok = 400 <= status < 500
                self._note("bad refused" if ok else "bad not refused", None if ok else f"{name}: HTTP {status} {text}")

    def _abort(self, rng: random.Random, rid: str, convo: list) -> None:
        n = self.context - len(convo) - 8
        with cf.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(self.srv.request, "/generate", _gen(convo, n, rid))
            time.sleep(rng.uniform(0.05, 0.5))
            self.srv.request("/abort_request", {"rid": rid}, timeout=30)
            status, text = fut.result()
        reason = (json.loads(text).get("meta_info", {}).get("finish_reason") or {}) if text.startswith("{") else {}
        if reason.get("type") == "abort" or (status >= 400 and "abort" in text.lower()):
            self._note("aborted")
        elif status == 200:
            self._note("finished before the abort")
        else:
            self._note("abort failed", f"HTTP {status}: {text}")

    def _hangup(self, rng: random.Random, convo: list) -> None:
        stream = rng.random() < 0.5
        body = json.dumps(_gen(convo, 64) | ({"stream": True} if stream else {})).encode()
        req = urllib.request.Request(self.srv.url + "/generate", data=body, headers={"Content-Type": "application/json"})
        try:
            if stream:
                with urllib.request.urlopen(req, timeout=120) as r:
                    r.readline(), r.readline()
            else:
                urllib.request.urlopen(req, timeout=rng.uniform(0.1, 0.5)).read()
        except (TimeoutError, urllib.error.URLError, OSError):
            pass
        self._note("hung up")

    def _flusher(self, going) -> None:
        while going():
            time.sleep(3.0)
            status, _ = self.srv.request("/flush_cache", {}, timeout=60)
            self._note("flush done" if status == 200 else "flush refused while busy")

    def run(self, duration_s: float, max_checked: int = 80, *, min_ok: int = 0, max_s: float | None = None) -> dict:
        """`duration_s` seconds of load, longer (up to `max_s`) until `min_ok` answers were kept."""
        t0 = time.monotonic()
        deadline = t0 + duration_s
        hard = t0 + max(duration_s, max_s or duration_s)
        system = self._tokens(random.Random(self.seed), 160)
        going = lambda: self._going(deadline, min_ok, hard)  # noqa: E731
        flushing = lambda: self._going(deadline - 2, min_ok, hard - 2)  # noqa: E731
        with cf.ThreadPoolExecutor(self.sessions + 1) as pool:
            futs = [pool.submit(self._session, s, going, system) for s in range(self.sessions)]
            futs.append(pool.submit(self._flusher, flushing))
            for f in futs:
                f.result()
        load_s = time.monotonic() - t0
        healthy = self.srv.proc.poll() is None and self.srv.healthy()
        # Solo reruns: one request at a time on an idle server, cache flushed first.
        checked = random.Random(self.seed).sample(self.kept, min(max_checked, len(self.kept)))
        self.srv.flush_cache(wait_s=120)  # hung-up requests may still be finishing
        differing = sum(self.srv.generate(p, n)["output_ids"] != out for p, n, out in checked)
        return {
            "seed": self.seed, "sessions": self.sessions, "load_s": round(load_s, 1),
            "outcomes": dict(sorted(self.counts.items())),
            "requests": sum(self.counts.values()),
            "unexpected": self.unexpected,
            "answers_checked": len(checked), "answers_differing": differing,
            "healthy_after": healthy,
        }


def counters_hold(stats: dict, pattern: str) -> bool:
    full = pattern.count("F")
    return (stats["indexer_runs"] == full * stats["forwards"]
            and stats["indexer_skips"] == (len(pattern) - full) * stats["forwards"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--pattern", default="FSSFSS")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--out", default="soak_results")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((Path(args.model_path) / "config.json").read_text())
    context = 1024
    srv = Server(args.model_path, ["--dtype", "float32", "--attention-backend", "indexcache", "--index-cache-pattern",
                                   args.pattern, "--context-length", str(context), "--max-total-tokens", "16384"],
                 log=out / "server.log", stats_file=out / "stats.json")
    with srv:
        summary = Soak(srv, vocab=cfg["vocab_size"], context=context, seed=args.seed, sessions=args.sessions).run(args.duration)
        stats = srv.stats()
    summary |= {"model": Path(args.model_path).name, "pattern": args.pattern, "counters": stats,
                "counters_hold": counters_hold(stats, args.pattern)}
    (out / "soak.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "counters"}, indent=1))
    ok = (summary["healthy_after"] and not summary["unexpected"] and not summary["answers_differing"]
          and summary["counters_hold"])
    print("soak:", "PASS" if ok else "FAIL", f"(summary in {out / 'soak.json'})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
