"""Where a server's scheduler spends its host time during a replay: `bench agentic --py-spy`.

py-spy (in the lock; the GPU bundle carries it) samples each `sglang::scheduler` process of the
server, and since session 34 its HTTP process (`python -m sglang.launch_server`: chat template,
tokenization, the tokenizer manager's loop; `STEM-pyspy-http.txt.gz`), at 100 Hz without
stopping it (`--nonblocking`), from just before a timed replay to just after, and writes the
Python stacks it saw, collapsed (`STEM-pyspy.txt.gz`: "frame;frame;... count" per line; only
samples where a thread was running, not waiting). Session 31 found
(c)'s decode forwards paced by the host while (c0)'s and (d)'s were not (`bench spans`' fit):
the GPU spans say that the host is late, this says what it was doing. `bench pyspy FILE...`
puts several servers' files side by side. A host that refuses py-spy (no ptrace) leaves the
replay's figures as they are and says why in the level's `py_spy` entry.
"""

from __future__ import annotations

import gzip
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 100
SCHEDULER = "sglang::scheduler"
HTTP = "sglang.launch_server"
_LINE = re.compile(r":\d+\)$")


def executable():
    """py-spy on PATH (the GPU host's `gpu_host.sh` puts the bundle's bin there), else next to
    this interpreter (a venv run without activating it); None if neither has it."""
    here = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(here) if here.exists() else None)


def scheduler_pids(processes) -> list:
    """The pids of `Server.processes()` that are SGLang schedulers (one per TP/PP rank)."""
    return sorted(pid for pid, cmd in processes if cmd.startswith(SCHEDULER))


def http_pid(processes):
    """The pid of the server's HTTP process (`python -m sglang.launch_server`), else None."""
    return next((pid for pid, cmd in processes if f"-m {HTTP} " in f"{cmd} "), None)


class Sampler:
    """py-spy record of the scheduler `pids` into OUT (one file per pid: OUT, OUT-1, ...), and of
    the `http` pid into OUT-http, until `stop()`."""

    def __init__(self, pids: list, out: Path, rate: int = RATE_HZ, http=None):
        self.runs, self.error = [], None
        exe = executable()
        if exe is None:
            self.error = "py-spy not found (PATH, or beside the interpreter)"
        elif not pids:
            self.error = f"no {SCHEDULER} process in the server's group"
        out = Path(out)
        named = [(pid, f"-{i}" if i else "") for i, pid in enumerate(pids)] + ([(http, "-http")] if http else [])
        for pid, suffix in (named if exe else []):
            path = out.with_name(f"{out.stem}{suffix}{out.suffix}")
            cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--format", "raw",
                   "--output", str(path)]
            self.runs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), path))

    def stop(self) -> dict:
        """Stop sampling; each file gzipped and summarized, or the reason there is none."""
        out = {"files": [], "error": self.error}
        for proc, path in self.runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
            try:
                said = proc.communicate(timeout=60)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                said = proc.communicate()[0]
            if not path.exists():
                out["error"] = f"py-spy exited {proc.returncode}: {said.strip()[-300:]}"
                continue
            stacks = read(path)  # summarized from the file py-spy wrote, then kept gzipped
            gz = path.with_name(path.name + ".gz")
            with open(path, "rb") as src, gzip.open(gz, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()
            out["files"].append({"path": gz.name, **summarize(stacks)})
        return out


def read(path) -> Counter:
    """Collapsed stacks -> samples (a plain or gzipped py-spy raw file)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    stacks = Counter()
    with opener(path, "rt") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def frames(stacks: Counter) -> tuple:
    """(self, inclusive) samples per function ("name (file)", line numbers dropped)."""
    own, incl = Counter(), Counter()
    for stack, n in stacks.items():
        names = [_LINE.sub(")", f) for f in stack.split(";")]
        own[names[-1]] += n
        for name in set(names):
            incl[name] += n
    return own, incl


PACKAGE = "sglang_indexcache"


def calls_out(stacks: Counter, package: str = PACKAGE) -> Counter:
    """Samples with a frame of `package`, keyed "its innermost such frame -> the frame it called"
    ("<self>" when that frame was running): what the package's own code costs the scheduler
    next to the upstream calls it wraps (`super()`, the hooked method), which the same server
    without the package runs too. py-spy reads a running process's stacks without stopping it
    (`--nonblocking`), so a few samples pair frames that were not caller and callee."""
    out = Counter()
    for stack, n in stacks.items():
        names = [_LINE.sub(")", f) for f in stack.split(";")]
        ours = [i for i, f in enumerate(names) if f"({package}/" in f]
        if ours:
            i = ours[-1]
            out[f"{names[i]} -> {names[i + 1] if i + 1 < len(names) else '<self>'}"] += n
    return out


def summarize(stacks: Counter, top: int = 25) -> dict:
    own, incl = frames(stacks)
    return {"samples": sum(stacks.values()), "rate_hz": RATE_HZ,
            "self": own.most_common(top), "inclusive": incl.most_common(top)}


def table(paths: list, top: int = 20) -> str:
    """`bench pyspy FILE...`: the functions with the most samples in any file, as seconds of the
    scheduler's running time in each (samples / rate), self and inclusive; then, where a file has
    any, this package's frames with what each called (`calls_out`)."""
    stacks = [read(p) for p in paths]
    data = [(*frames(s), calls_out(s)) for s in stacks]
    lines = ["files: " + "  ".join(f"[{i}] {p}" for i, p in enumerate(paths)),
             "running s: " + "  ".join(f"[{i}] {sum(own.values()) / RATE_HZ:.1f}" for i, (own, *_) in enumerate(data))]
    for kind, col in (("self", 0), ("inclusive", 1), (f"{PACKAGE}'s innermost frame -> what it called:", 2)):
        names = []
        for d in data:  # each file's top, ties by name (frames() counts from a set)
            names += [n for n, _ in sorted(d[col].items(), key=lambda kv: (-kv[1], kv[0]))[:top] if n not in names]
        if not names:
            continue
        lines.append(f"{kind} s per file, then function:" if col < 2 else f"{kind} s per file")
        for n in sorted(names, key=lambda n: (-max(d[col][n] for d in data), n))[:top]:  # ties by name
            lines.append("  " + " ".join(f"{d[col][n] / RATE_HZ:7.2f}" for d in data) + f"  {n}")
    return "\n".join(lines)


def table_cmd(args) -> int:
    print(table(args.files, args.top))
    return 0
