"""One lock for every environment: this machine's venv, CI, and the GPU bundle.

    requirements/lock.txt         every package of the venv at an exact version with its hashes
                                  (`uv pip compile --universal`: Python 3.11 here, 3.12 on the GPU host)
    requirements/build.in         the tools the install itself uses (pip, uv, setuptools), locked too
    requirements/gpu-host.toml    the GPU image: its Python, what it already has, what is not needed there
    requirements/gpu-runtime.txt  derived: the lock's closure of `sglang` for the GPU host, minus gpu-host.toml
    requirements/bootstrap.txt    derived: uv's pin with its hashes, which `make install` installs with pip

    python -m sglang_indexcache.envlock           # regenerate all (needs uv and the package index)
    python -m sglang_indexcache.envlock --check   # offline: the lock is up to date, the derived files match it

The lock records a sha256 of its inputs (pyproject's requirements, build.in, the resolver
options), so `--check` fails when pyproject.toml changes and the lock was not regenerated.
The resolution is cut at `EXCLUDE_NEWER`: regenerating without changing inputs gives the
same versions whatever the index publishes later; move the date to take newer releases.
Imports only the standard library and `packaging` (in the lock), nothing of SGLang.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field

from packaging.markers import Marker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQ = os.path.join(REPO, "requirements")
LOCK, BUILD_IN = os.path.join(REQ, "lock.txt"), os.path.join(REQ, "build.in")
GPU_HOST, GPU_RUNTIME = os.path.join(REQ, "gpu-host.toml"), os.path.join(REQ, "gpu-runtime.txt")
BOOTSTRAP = os.path.join(REQ, "bootstrap.txt")
EXCLUDE_NEWER = "2026-11-30T00:00:00Z"
RESOLVER_ARGS = ["--extra", "test", "--extra", "plots", "--universal", "--fork-strategy", "fewest",
                 "--python-version", "3.11", "--generate-hashes", "--exclude-newer", EXCLUDE_NEWER]
REGENERATE = "python -m sglang_indexcache.envlock"
INPUTS_LINE = "# inputs-sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.*?))?\s*\\?$")
_COMMENT_NAME = re.compile(r"^#\s+([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s|$)")


class LockError(Exception):
    """The lock or a file derived from it is missing, malformed or out of date."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Entry:
    name: str                       # as written in the lock
    version: str
    marker: str | None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # normalized names of dependents, "-r FILE", "PROJECT (pyproject.toml)"

    def applies(self, env: dict) -> bool:
        return self.marker is None or Marker(self.marker).evaluate(env)


def inputs_sha256(repo: str = REPO) -> str:
    """Hash of everything the resolution depends on: pyproject's requirements, build.in, options."""
    with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
        py = tomllib.load(f)
    project = py.get("project", {})
    with open(os.path.join(repo, "requirements", "build.in"), encoding="utf-8") as f:
        build_in = [ln.split("#", 1)[0].strip() for ln in f]
    payload = {"requires-python": project.get("requires-python"),
               "dependencies": project.get("dependencies", []),
               "optional-dependencies": project.get("optional-dependencies", {}),
               "build-system": py.get("build-system", {}).get("requires", []),
               "build.in": [ln for ln in build_in if ln], "resolver": RESOLVER_ARGS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def parse_lock(text: str) -> tuple[dict[str, str], list[Entry]]:
    """(header fields, entries) of a `uv pip compile --generate-hashes` output."""
    header, entries, in_via = {}, [], False
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith(INPUTS_LINE):
            header["inputs-sha256"] = raw[len(INPUTS_LINE):].strip()
        if not line or (raw.startswith("#") and not raw.startswith("    ")):
            continue
        m = _PIN.match(raw)
        if m:
            entries.append(Entry(m.group(1), m.group(2), m.group(3)))
            in_via = False
        elif line.startswith("--hash=") and entries:
            entries[-1].hashes.append(line.split("=", 1)[1].rstrip(" \\"))
        elif line.startswith("# via") and entries:
            rest = line[len("# via"):].strip()
            in_via = not rest
            if rest:
                entries[-1].via.append(_via(rest))
        elif in_via and line.startswith("#") and entries:
            entries[-1].via.append(_via(line.lstrip("#").strip()))
        else:
            raise LockError(f"lock line not understood: {raw!r}")
    return header, entries


def _via(text: str) -> str:
    return text if text.startswith("-r") or "(" in text else normalize(text)


def read_lock(path: str = LOCK) -> tuple[dict[str, str], list[Entry]]:
    if not os.path.exists(path):
        raise LockError(f"{path}: missing; run `{REGENERATE}`")
    with open(path, encoding="utf-8") as f:
        return parse_lock(f.read())


def marker_env(python: str, system: str = "linux", machine: str = "x86_64") -> dict:
    """PEP 508 marker environment of a CPython `python` ("3.12" or "3.12.3") on `system`."""
    full = python if python.count(".") == 2 else python + ".0"
    return {"python_version": ".".join(full.split(".")[:2]), "python_full_version": full,
            "sys_platform": system, "platform_system": system.capitalize(), "os_name": "posix",
            "platform_machine": machine, "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "platform_release": "", "platform_version": "",
            "implementation_version": full, "extra": ""}


def closure(entries: list[Entry], root: str, env: dict) -> list[Entry]:
    """The entries `root` needs in `env`: root, and every entry whose `via` chain reaches it."""
    live = {normalize(e.name): e for e in entries if e.applies(env)}
    if normalize(root) not in live:
        raise LockError(f"{root} is not in the lock for {env['python_full_version']}")
    needed, todo = {normalize(root)}, [normalize(root)]
    dependents = {n: {v for v in e.via if v in live} for n, e in live.items()}
    while todo:
        parent = todo.pop()
        for n, deps in dependents.items():
            if parent in deps and n not in needed:
                needed.add(n)
                todo.append(n)
    return sorted((live[n] for n in needed), key=lambda e: normalize(e.name))


def load_gpu_host(path: str = GPU_HOST) -> dict:
    with open(path, "rb") as f:
        host = tomllib.load(f)
    for key in ("python", "root", "has", "not_needed"):
        if key not in host:
            raise LockError(f"{path}: missing key {key!r}")
    return host


def gpu_runtime(entries: list[Entry], host: dict, inputs: str) -> str:
    """requirements/gpu-runtime.txt's text: exact pins, no hashes (the bundle hashes wheels)."""
    needed = closure(entries, host["root"], marker_env(host["python"]))
    leave = {normalize(n) for n in list(host["has"]) + list(host["not_needed"])}
    pins = [e for e in needed if normalize(e.name) not in leave]
    unknown = leave - {normalize(e.name) for e in needed}
    if unknown:
        raise LockError(f"{GPU_HOST}: names not in the lock's closure of {host['root']} for the GPU host: "
                        f"{', '.join(sorted(unknown))}; remove them")
    notes = {normalize(k): v for k, v in host.get("notes", {}).items()}
    lines = [f"# GENERATED by `{REGENERATE}` from requirements/lock.txt and requirements/gpu-host.toml:",
             f"# the lock's closure of {host['root']} for CPython {host['python']} on linux x86_64, minus what",
             "# the GPU image already has and what is not needed there (gpu-host.toml says which and why).",
             "# Bundle it with `sglang-indexcache bundle build` (README: \"Offline install\"). Do not edit.",
             f"# lock inputs-sha256: {inputs}"]
    for e in pins:
        note = notes.get(normalize(e.name))
        lines.append(f"{e.name}=={e.version}" + (f"  # {note}" if note else ""))
    return "\n".join(lines) + "\n"


def bootstrap(entries: list[Entry]) -> str:
    """requirements/bootstrap.txt's text: uv's pin with every hash the lock has for it."""
    uv = [e for e in entries if normalize(e.name) == "uv"]
    if len(uv) != 1 or uv[0].marker or not uv[0].hashes:
        raise LockError("the lock must pin uv exactly once, for every environment, with hashes")
    e = uv[0]
    return (f"# GENERATED by `{REGENERATE}` from requirements/lock.txt: the installer `make install` uses.\n"
            f"{e.name}=={e.version} \\\n" + " \\\n".join(f"    --hash={h}" for h in e.hashes) + "\n")


def find_uv() -> str:
    for cand in (os.path.join(os.path.dirname(sys.executable), "uv"), shutil.which("uv")):
        if cand and os.path.exists(cand):
            return cand
    raise LockError("uv not found: `make install` puts it in .venv/bin, or `pip install -r requirements/bootstrap.txt`")


def regenerate(repo: str = REPO) -> None:
    """Resolve pyproject.toml + build.in again with uv and rewrite the lock and derived files."""
    cmd = [find_uv(), "pip", "compile", "pyproject.toml", "requirements/build.in", *RESOLVER_ARGS,
           "--custom-compile-command", REGENERATE, "-o", "requirements/lock.txt"]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=repo, check=True)
    with open(LOCK, encoding="utf-8") as f:
        lines = [ln for ln in f if not ln.startswith(INPUTS_LINE)]
    at = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))  # after uv's header
    lines.insert(at, f"{INPUTS_LINE}{inputs_sha256(repo)}\n")
    _write(LOCK, "".join(lines))
    header, entries = read_lock()
    _write(GPU_RUNTIME, gpu_runtime(entries, load_gpu_host(), header["inputs-sha256"]))
    _write(BOOTSTRAP, bootstrap(entries))


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path, REPO)}")


def check() -> list[str]:
    """Problems, [] when the lock is up to date and the derived files are what it gives."""
    header, entries = read_lock()
    problems = []
    if header.get("inputs-sha256") != inputs_sha256():
        problems.append("requirements/lock.txt is out of date with pyproject.toml / requirements/build.in "
                        f"(inputs-sha256 differs): run `{REGENERATE}`")
    missing = [e.name for e in entries if not e.hashes]
    if missing:
        problems.append(f"requirements/lock.txt: no hashes for {', '.join(missing)}")
    derived = ((GPU_RUNTIME, gpu_runtime(entries, load_gpu_host(), header.get("inputs-sha256", "?"))),
               (BOOTSTRAP, bootstrap(entries)))
    for path, want in derived:
        have = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if have != want:
            problems.append(f"{os.path.relpath(path, REPO)} differs from what the lock gives: run `{REGENERATE}`")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sglang_indexcache.envlock", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="verify offline instead of regenerating")
    args = p.parse_args(argv)
    try:
        if args.check:
            problems = check()
            for msg in problems:
                print(f"error: {msg}", file=sys.stderr)
            if not problems:
                print("lock up to date; gpu-runtime.txt and bootstrap.txt match it")
            return 1 if problems else 0
        regenerate()
        return 0
    except (LockError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
