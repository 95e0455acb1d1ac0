"""Start and talk to a real `python -m sglang.launch_server` (the demo, the tests, bench).

Nothing here reaches into SGLang: the server is a subprocess and everything goes through
its HTTP API (`/generate`, `/v1/chat/completions`, `/flush_cache`).

Not SGLang's `sglang.test.test_utils.popen_launch_server`: that one adds its CI's offline-mode
retry and device auto-detection, and sends output to the caller's pipes; here every server
writes its own log file (the tests read it: refusals, retractions, the schedule table), runs
in its own process group (so `stop()` takes the scheduler and detokenizer down with it), and
gets the CPU-engine environment and the backend's stats file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional, Sequence


class ServerError(RuntimeError):
    pass


def post_json(url: str, body: Optional[dict] = None, *, token: Optional[str] = None, timeout: float = 600.0) -> dict:
    """POST `body` as JSON to a server's `url` (with `token` as the bearer key); its JSON answer.
    An HTTP error raises ServerError with the status and the body."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body or {}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        path = urllib.parse.urlsplit(url).path
        raise ServerError(f"{path}: HTTP {e.code}: {e.read().decode(errors='replace')[:2000]}") from e
    return json.loads(text) if text.strip().startswith(("{", "[")) else {"text": text}


def _ephemeral_range() -> tuple:
    """The ports the kernel hands out to bind(0) and to outgoing connections (Linux)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port that is free now and that the kernel will not hand to anyone else: outside the
    ephemeral range. A port from bind(0) lies inside it, so any outgoing connection or
    bind(0) on the machine (another test's server, a tokenizer's download attempt) can take
    it before SGLang binds; CI lost a test to that ("address already in use", issue 14).
    Below 22000: SGLang draws its own NCCL ports from 22000-29999 (the same reasoning, its
    `get_free_port_below_ephemeral`), and another server's must not take this one."""
    import random

    lo, hi = _ephemeral_range()
    candidates = [(a, b) for a, b in ((10000, min(lo, 22000)), (hi + 1, 65536)) if b - a > 2000]
    rng = random.SystemRandom()
    for _ in range(200):
        a, b = rng.choice(candidates) if candidates else (1024, 65536)
        port = rng.randrange(a, b)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:  # everything outside the range taken: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BIND_ERROR = "error while attempting to bind on address"  # uvicorn's words, then SGLang hangs


def cpu_env(stats_file: Optional[Path] = None) -> dict:
    """Environment for a CPU server: SGLang's CPU engine, no torch.compile (on 2 cores
    inductor spends ~20 s compiling MoE routing for a tiny model), optional stats file."""
    env = dict(os.environ)
    env["SGLANG_USE_CPU_ENGINE"] = "1"
    env.setdefault("TORCHDYNAMO_DISABLE", "1")
    if stats_file is not None:
        env["SGLANG_INDEXCACHE_STATS"] = str(stats_file)
    return env


NO_CRASH_DIAGNOSTICS = ("SGLANG_PYSPY_DUMP_BEFORE_CRASH", "SGLANG_CUDA_COREDUMP_BEFORE_CRASH")


class Server:
    """`with Server(model, [...args], log=path) as srv: srv.generate(...)`."""

    def __init__(
        self,
        model_path: str | Path,
        args: Sequence[str] = (),
        *,
        log: Path,
        device: str = "cpu",
        stats_file: Optional[Path] = None,
        startup_timeout: float = 300.0,
        env: Optional[dict] = None,
    ):
        self.log = Path(log)
        self.stats_file = stats_file
        self.launch = [
            sys.executable, "-m", "sglang.launch_server",
            "--model-path", str(model_path),
            "--device", device,
            "--host", "127.0.0.1",
            *args,
        ]
        self._use_port(free_port())
        if device == "cpu":
            self.env = cpu_env(stats_file)
        else:
            self.env = dict(os.environ)
            self.env.pop("SGLANG_USE_CPU_ENGINE", None)
            if stats_file is not None:
                self.env["SGLANG_INDEXCACHE_STATS"] = str(stats_file)
        # stop() signals the server's group: the scheduler exits first, SGLang's launcher takes
        # that for a crash and sleeps 5 s before dumping the live schedulers (py-spy, CUDA
        # coredump), of which there are none left. Off unless the caller's environment says.
        for var in NO_CRASH_DIAGNOSTICS:
            self.env.setdefault(var, "0")
        self.env.update(env or {})  # the server's own variables, over the inherited ones
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.startup_s: Optional[float] = None
        self.stop_grace_s = 30.0  # SIGTERM to SIGKILL, for stop() and a failed start()

    # -- lifecycle --------------------------------------------------------------------

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [*self.launch, "--port", str(port)]

    def start(self, bind_attempts: int = 3) -> "Server":
        """Launch and wait for /health. Where the HTTP port was taken between free_port() and
        the server's bind (uvicorn logs it and SGLang then hangs instead of exiting), stop it
        and launch again on another port, `bind_attempts` times in all (each launch gets the
        whole startup timeout: SGLang binds its HTTP port only once the engine is up)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        t_first = time.monotonic()
        _stop_on_exit()
        for attempt in range(1, bind_attempts + 1):
            self._log_fh = open(self.log, "w")
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=self._log_fh, stderr=subprocess.STDOUT, start_new_session=True
            )
            _LIVE.add(self)
            if self._wait_healthy(time.monotonic()):
                self.startup_s = time.monotonic() - t_first
                return self
            taken = self.port
            self.stop()
            if attempt == bind_attempts:
                raise ServerError(f"port taken on each of {bind_attempts} launches, last {taken}; log {self.log}:\n"
                                  f"{self.tail()}")
            self._use_port(free_port())
            print(f"server: port {taken} was taken before the server bound it; again on {self.port}",
                  file=sys.stderr)
        raise AssertionError("unreachable")

    def _wait_healthy(self, t0: float) -> bool:
        """True once healthy; False where the log says the HTTP port could not be bound;
        ServerError where the server exits or the startup timeout passes."""
        while time.monotonic() - t0 < self.startup_timeout:
            if self.proc.poll() is not None:
                self.stop()  # what it started may outlive it, holding CPUs or GPU memory
                raise ServerError(f"server exited with {self.proc.returncode}; log {self.log}:\n{self.tail()}")
            if self.healthy(timeout=5):
                return True
            if self._bind_failed():
                return False
            time.sleep(1.0)
        self.stop()
        raise ServerError(f"server not healthy after {self.startup_timeout:.0f} s; log {self.log}:\n{self.tail()}")

    def _bind_failed(self) -> bool:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return False
        return any(BIND_ERROR in line and f", {self.port})" in line for line in text.splitlines())

    def stop(self) -> None:
        """Stop the server and every process of its process group (SGLang's scheduler,
        detokenizer and their helpers): SIGTERM, `stop_grace_s` to exit, then SIGKILL. Returns
        only once none is left, so the next server of a benchmark does not share the CPUs or
        the GPU with this one's stragglers."""
        import signal

        grace_s = self.stop_grace_s
        if self.proc is not None:
            group = self.proc.pid  # start_new_session: the group id is the launcher's pid
            if self.proc.poll() is None:
                _signal_group(group, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    _signal_group(group, signal.SIGKILL)
                    self.proc.wait(timeout=30)
            if not _group_gone(group, grace_s):  # children can outlive the launcher
                _signal_group(group, signal.SIGKILL)
                if not _group_gone(group, 30):
                    raise ServerError(f"processes of the server's group {group} survived SIGKILL")
        _LIVE.discard(self)
        if getattr(self, "_log_fh", None) is not None:
            self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def processes(self) -> list:
        """(pid, command line) of each live process of the server's group; SGLang's processes
        name themselves (`sglang::scheduler`, `sglang::detokenizer`) in their command line."""
        if self.proc is None:
            return []
        out = []
        for pid in _group_members(self.proc.pid):
            try:
                out.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()))
            except OSError:  # gone meanwhile
                continue
        return out

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- API --------------------------------------------------------------------------

    def request(self, path: str, body=None, *, raw: Optional[bytes] = None, timeout: float = 300.0) -> tuple:
        """POST `body` as JSON (or `raw` bytes as they are); (HTTP status, response text), errors included."""
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def post(self, path: str, body: Optional[dict] = None, *, timeout: float = 600.0) -> dict:
        return post_json(self.url + path, body, timeout=timeout)

    def text(self, path: str, *, timeout: float = 60.0) -> str:
        """GET `path`; the body as text (HTTP errors raise ServerError)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            raise ServerError(f"{path}: HTTP {e.code}: {e.read().decode(errors='replace')[:2000]}") from e

    def get(self, path: str, *, timeout: float = 60.0) -> dict:
        return json.loads(self.text(path, timeout=timeout))

    def generate(self, input_ids: Sequence[int], max_new_tokens: int = 32, *, logprobs: bool = False, **params) -> dict:
        """Greedy generation from token ids; returns SGLang's JSON (output_ids, meta_info)."""
        body = {
            "input_ids": list(input_ids),
            "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0.0, "ignore_eos": True, **params},
        }
        if logprobs:
            body.update(return_logprob=True, logprob_start_len=0)
        return self.post("/generate", body)

    def healthy(self, timeout: float = 60.0) -> bool:
        """GET /health answers 200 (SGLang runs a one-token generation for it by default)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def flush_cache(self, wait_s: float = 0.0) -> None:
        """Empty the radix cache; SGLang refuses while requests run unless it may wait `wait_s`."""
        self.post(f"/flush_cache?timeout={wait_s}" if wait_s else "/flush_cache")

    def stats(self) -> dict:
        """The backend's indexer counters (needs stats_file)."""
        if self.stats_file is None:
            raise ServerError("server started without a stats file")
        return json.loads(Path(self.stats_file).read_text())


_LIVE: set = set()  # servers started and not stopped yet, stopped at exit
_HANDLERS_INSTALLED = False


def _stop_on_exit() -> None:
    """A server runs in its own session, so a signal that ends the process which started it
    does not reach it: a benchmark killed by `timeout` (SIGTERM) left its server holding 86 GB
    of an H200 beside the next runs. Once, before the first start: stop every live server at
    exit, and turn SIGTERM and SIGHUP (where nothing else handles them) into SystemExit(128 +
    signal), so `with Server(...)` blocks and `finally` clauses stop their servers too."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    import atexit
    import signal
    import threading

    atexit.register(lambda: [srv.stop() for srv in list(_LIVE)])
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread

    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _exit)


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_members(group: int) -> list:
    """Live (not zombie) processes of process group `group`, from /proc (Linux): a zombie has
    exited and holds nothing, but signal 0 would still find it where PID 1 does not reap."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # state, ppid, pgrp, ...
            members.append(int(entry.name))
    return members


def _group_gone(group: int, timeout: float) -> bool:
    """True once no live process of `group` is left."""
    deadline = time.monotonic() + timeout
    while _group_members(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
