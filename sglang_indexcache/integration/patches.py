"""The patch set: plain unified diffs against one pinned SGLang, applied strictly.

Every file a patch touches is in one of three states, told apart by hashes alone:
  pristine  - as SGLang's wheel installed it (the sha256 in the dist-info RECORD);
  applied   - exactly pristine + our patches;
  modified  - anything else (edited by hand, another tool, another version): we refuse
              to touch it.
`apply` and `revert` are idempotent and all-or-nothing: every file is checked before
any is written. Hunks must match exactly where they say (no fuzz, no offsets).

Example:
    >>> from sglang_indexcache.integration.patches import PatchSet
    >>> PatchSet.load().status().applied   # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

SGLANG_VERSION = "0.5.23"
PATCH_DIR = f"sglang-{SGLANG_VERSION}"

PRISTINE, APPLIED, MODIFIED, MISSING = "pristine", "applied", "modified", "missing"


class PatchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Hunk:
    old_start: int  # 1-based line numbers from the hunk header
    new_start: int
    old: tuple  # lines (with newline) the hunk expects
    new: tuple  # lines it writes instead


@dataclass(frozen=True)
class FilePatch:
    path: str  # relative to site-packages, e.g. "sglang/srt/arg_groups/fields/model.py"
    hunks: tuple


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_unified_diff(text: str, name: str = "<patch>") -> list:
    """Parse a `diff -u`/`git diff` text into FilePatches (paths stripped of a/ b/)."""
    lines = text.splitlines(keepends=True)
    files, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("--- "):
            i += 1
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise PatchError(f"{name}: '---' line {i + 1} not followed by '+++'")
        path = lines[i + 1][4:].split("\t")[0].strip()
        path = path[2:] if path.startswith("b/") else path
        i += 2
        hunks = []
        while i < len(lines) and lines[i].startswith("@@"):
            m = _HUNK.match(lines[i])
            if not m:
                raise PatchError(f"{name}: bad hunk header at line {i + 1}: {lines[i]!r}")
            old_len = int(m.group(2) or 1)
            new_len = int(m.group(4) or 1)
            i += 1
            old, new = [], []
            while len(old) < old_len or len(new) < new_len:
                if i >= len(lines):
                    raise PatchError(f"{name}: hunk for {path} ends early")
                tag, body = lines[i][:1], lines[i][1:]
                if lines[i].startswith("\\"):  # "\ No newline at end of file"
                    i += 1
                    continue
                if tag == " ":
                    old.append(body)
                    new.append(body)
                elif tag == "-":
                    old.append(body)
                elif tag == "+":
                    new.append(body)
                else:
                    raise PatchError(f"{name}: unexpected line {i + 1} in hunk: {lines[i]!r}")
                i += 1
            hunks.append(Hunk(int(m.group(1)), int(m.group(3)), tuple(old), tuple(new)))
        if not hunks:
            raise PatchError(f"{name}: no hunks for {path}")
        files.append(FilePatch(path, tuple(hunks)))
    if not files:
        raise PatchError(f"{name}: no file changes found")
    return files


def apply_hunks(text: str, hunks: tuple, *, reverse: bool = False, where: str = "") -> str:
    """Apply hunks exactly at their line numbers; raise PatchError on any mismatch."""
    lines = text.splitlines(keepends=True)
    out, pos = [], 0
    for h in hunks:
        expect, write, line = (h.new, h.old, h.new_start) if reverse else (h.old, h.new, h.old_start)
        # An empty side's header names the line *after which* the hunk goes.
        start = line if not expect else line - 1
        if start < pos or lines[start : start + len(expect)] != list(expect):
            raise PatchError(f"{where}: hunk at line {line} does not match the file")
        out += lines[pos:start] + list(write)
        pos = start + len(expect)
    return "".join(out + lines[pos:])


def _sha256_record(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class SglangInstall:
    """An installed SGLang: a site-packages root holding `sglang/` and its dist-info."""

    def __init__(self, root: Path):
        self.root = Path(root)
        infos = sorted(self.root.glob("sglang-*.dist-info"))
        if not infos:
            raise PatchError(f"no sglang-*.dist-info in {self.root}: is SGLang installed there?")
        self.dist_info = infos[-1]
        self.version = self._read_version()
        self._record = self._read_record()

    @classmethod
    def find(cls) -> "SglangInstall":
        import importlib.util

        spec = importlib.util.find_spec("sglang")
        if spec is None or not spec.submodule_search_locations:
            raise PatchError("SGLang is not installed in this Python environment (pip install sglang==0.5.23)")
        return cls(Path(list(spec.submodule_search_locations)[0]).parent)

    def _read_version(self) -> str:
        for line in (self.dist_info / "METADATA").read_text().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
        raise PatchError(f"{self.dist_info}/METADATA has no Version")

    def _read_record(self) -> dict:
        record = {}
        for line in (self.dist_info / "RECORD").read_text().splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and parts[1].startswith("sha256="):
                record[parts[0]] = parts[1][len("sha256=") :]
        return record

    def pristine_hash(self, path: str) -> Optional[str]:
        return self._record.get(path)

    def read(self, path: str) -> Optional[bytes]:
        p = self.root / path
        return p.read_bytes() if p.is_file() else None

    def write(self, path: str, text: str) -> None:
        """Write a new file and rename it over the old one, never into the old file: installers
        (uv by default) hard-link site-packages files to their cache, and an in-place write would
        patch the cache too, so every later install from it would get a half-patched SGLang."""
        target = self.root / path
        tmp = target.with_name(f".{target.name}.indexcache-tmp")
        tmp.write_text(text)
        os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)


@dataclass(frozen=True)
class FileStatus:
    path: str
    state: str
    patches: tuple


@dataclass(frozen=True)
class Status:
    version: str
    files: tuple

    @property
    def applied(self) -> bool:
        return all(f.state == APPLIED for f in self.files)

    @property
    def pristine(self) -> bool:
        return all(f.state == PRISTINE for f in self.files)

    def report(self) -> str:
        lines = [f"SGLang {self.version}; patch set for {SGLANG_VERSION}"]
        lines += [f"  {f.state:<9} {f.path}  ({', '.join(f.patches)})" for f in self.files]
        return "\n".join(lines)


class PatchSet:
    """The ordered patches of one SGLang version, against one installation."""

    def __init__(self, patches: list, install: SglangInstall):
        self.patches = patches  # [(name, [FilePatch])], in apply order
        self.install = install

    @staticmethod
    def patch_texts() -> list:
        folder = resources.files("sglang_indexcache._patches") / PATCH_DIR
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".patch"))
        return [(n, (folder / n).read_text()) for n in names]

    @classmethod
    def load(cls, root: Optional[Path] = None) -> "PatchSet":
        install = SglangInstall(root) if root is not None else SglangInstall.find()
        if install.version != SGLANG_VERSION:
            raise PatchError(
                f"sglang-indexcache's patch set is for SGLang {SGLANG_VERSION}, but SGLang "
                f"{install.version} is installed at {install.root}. Install the pinned version: "
                f"pip install sglang=={SGLANG_VERSION}"
            )
        patches = [(n, parse_unified_diff(t, n)) for n, t in cls.patch_texts()]
        return cls(patches, install)

    def _by_file(self) -> dict:
        files: dict = {}
        for name, fps in self.patches:
            for fp in fps:
                files.setdefault(fp.path, []).append((name, fp))
        return files

    def _expected(self, path: str, entries: list) -> tuple:
        """(pristine text or None, fully patched text or None, state)."""
        data = self.install.read(path)
        if data is None:
            return None, None, MISSING
        text = data.decode()
        if _sha256_record(data) == self.install.pristine_hash(path):
            patched = text
            for name, fp in entries:
                patched = apply_hunks(patched, fp.hunks, where=f"{name}: {path}")
            return text, patched, PRISTINE
        # Not pristine: is it exactly our result? Undo in reverse order and compare.
        try:
            pristine = text
            for name, fp in reversed(entries):
                pristine = apply_hunks(pristine, fp.hunks, reverse=True, where=f"{name}: {path}")
        except PatchError:
            return None, None, MODIFIED
        if _sha256_record(pristine.encode()) == self.install.pristine_hash(path):
            return pristine, text, APPLIED
        return None, None, MODIFIED

    def status(self) -> Status:
        files = []
        for path, entries in self._by_file().items():
            _, _, state = self._expected(path, entries)
            files.append(FileStatus(path, state, tuple(n for n, _ in entries)))
        return Status(self.install.version, tuple(files))

    def _refuse_modified(self, plan: dict) -> None:
        bad = [p for p, (_, _, state) in plan.items() if state in (MODIFIED, MISSING)]
        if bad:
            raise PatchError(
                "these SGLang files changed since install (or are missing), so the patch set "
                "will not touch them: " + ", ".join(bad) + f". Reinstall SGLang from a fresh download (a cache may hold edited copies): "
                f"uv pip install --refresh-package sglang --reinstall-package sglang --no-deps "
                f"sglang=={SGLANG_VERSION} (or pip install --force-reinstall --no-cache-dir "
                f"--no-deps sglang=={SGLANG_VERSION})"
            )

    def apply(self) -> list:
        """Apply every patch; returns the files written (empty when already applied)."""
        plan = {p: self._expected(p, e) for p, e in self._by_file().items()}
        self._refuse_modified(plan)
        written = []
        for path, (_, patched, state) in plan.items():
            if state == PRISTINE:
                self.install.write(path, patched)
                written.append(path)
        return written

    def revert(self) -> list:
        """Restore every patched file to pristine; returns the files written."""
        plan = {p: self._expected(p, e) for p, e in self._by_file().items()}
        self._refuse_modified(plan)
        written = []
        for path, (pristine, _, state) in plan.items():
            if state == APPLIED:
                self.install.write(path, pristine)
                written.append(path)
        return written
