"""Offline wheel bundles for air-gapped GPU hosts: `build` here, `install` there.

A bundle is a folder: `manifest.json`, one tar stream of wheels split into
`part-000.bin`, `part-001.bin`, ... (each at most --part-size bytes), and
`install_bundle.py`, a copy of `bundle_install.py`, the installing half, which needs only the
standard library and pip. This module builds; `sglang-indexcache bundle install` (or the
copy, on the host) installs.

Wheel file names and versions are parsed here, not with `packaging`: the installing half
cannot import it (not in every host's standard library, and the bundle is what would bring
it), and the two halves share one reading of the format.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from sglang_indexcache import bundle_install
from sglang_indexcache.bundle_install import (  # the installing half: the format, its error, its CLI
    CHUNK, FORMAT, FORMAT_VERSION, INSTALLER, MANIFEST, PART, PART_RE, BundleError, add_install_arguments, mib,
    run_install, sha256_file,
)

CREATED_BY = "sglang-indexcache bundle (bundle.py, format 1)"
# a part and this checkout travel together in one device call, which carries at most 64 MiB:
# 56 MiB leaves 8 for the tracked tree (5.2 MB on 2026-12-01, when 60 MiB parts stopped fitting)
DEFAULT_PART_SIZE = 56 * 2**20


# --- small helpers -------------------------------------------------------------------

def parse_size(text: str) -> int:
    """'60MiB' -> 62914560; also KiB/GiB, kB/MB/GB (powers of 10) and plain bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|[kKMG]B?|B)?\s*", str(text))
    if not m:
        raise BundleError(f"bad size {text!r}: use e.g. 60MiB, 62MB or 1048576")
    unit = (m.group(2) or "B").upper().rstrip("B") or "B"
    mult = {"B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "KI": 2**10, "MI": 2**20, "GI": 2**30}[unit]
    size = int(float(m.group(1)) * mult)
    if size < 1:
        raise BundleError(f"bad size {text!r}: must be at least 1 byte")
    return size


def normalize_name(name: str) -> str:
    """PEP 503 name: 'Jinja2' and 'jinja2', 'typing_extensions' and 'typing-extensions' match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def normalize_version(version: str) -> str:
    """Enough of PEP 440 for exact pins: '13.0.3' == '13.0.3.0', 'V1.0' == '1.0'."""
    v = version.strip().lower().lstrip("v")
    m = re.match(r"^(\d+(?:\.\d+)*)(.*)$", v)
    if not m:
        return v
    release = [str(int(x)) for x in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == "0":
        release.pop()
    return ".".join(release) + re.sub(r"[-_]", ".", m.group(2))


def wheel_name_version(filename: str) -> tuple[str, str]:
    """('torch', '2.14.1') from 'torch-2.14.1-cp312-cp312-manylinux_2_28_x86_64.whl'."""
    parts = os.path.basename(filename)[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise BundleError(f"{filename}: not a wheel file name (name-version[-build]-py-abi-platform.whl)")
    return normalize_name(parts[0]), parts[1]


def wheel_min_glibc(filename: str) -> int | None:
    """N of the oldest glibc 2.N this wheel runs on (None: no glibc needed, e.g. `any`)."""
    plats = os.path.basename(filename)[: -len(".whl")].split("-")[-1].split(".")
    ns = []
    for plat in plats:
        m = re.match(r"manylinux_2_(\d+)_", plat)
        alias = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}.get(plat.split("_", 1)[0])
        if m:
            ns.append(int(m.group(1)))
        elif alias:
            ns.append(alias)
        elif plat == "any":
            return None
    return min(ns) if ns else None


def read_requirements(path: str) -> list[tuple[str, str, str]]:
    """[(normalized name, version, line)] of a file of exact pins `name==version`."""
    out, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.!+_-]+)", line)
            if not m:
                raise BundleError(f"{path}:{lineno}: {line!r} is not an exact pin `name==version`")
            name = normalize_name(m.group(1))
            if name in seen:
                raise BundleError(f"{path}:{lineno}: {m.group(1)} is pinned twice (also line {seen[name]})")
            seen[name] = lineno
            out.append((name, m.group(2), line))
    return out


# --- stripping files out of a wheel --------------------------------------------------

def _glob_regex(pattern: str) -> re.Pattern:
    """A path glob: `*` and `?` stay inside one folder, `**/` spans any number of folders."""
    i, out = 0, []
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append(fnmatch.translate(pattern[i : j + 1])[4:-3])
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def strip_wheel(src: str, dst: str, patterns: list[str]) -> list[dict]:
    """Copy wheel `src` to `dst` without the files matching `patterns` (archive paths).

    The stripped files' lines leave `.dist-info/RECORD`, so the result is a valid
    wheel that pip installs and `pip check`/RECORD-based uninstall agree with. The
    `.dist-info` folder itself is never stripped. Returns [{path, size, pattern}].
    """
    regexes = [(p, _glob_regex(p)) for p in patterns]
    stripped: list[dict] = []
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        records = [i for i in infos if re.fullmatch(r"[^/]+\.dist-info/RECORD", i.filename)]
        if len(records) != 1:
            raise BundleError(f"{os.path.basename(src)}: expected one .dist-info/RECORD, found {len(records)}")
        record_info = records[0]
        dist_info = record_info.filename.split("/", 1)[0] + "/"
        drop = set()
        for info in infos:
            for pat, rx in regexes:
                if rx.match(info.filename):
                    if info.filename.startswith(dist_info):
                        raise BundleError(f"--strip {pat!r} would remove {info.filename} (the wheel's metadata)")
                    drop.add(info.filename)
                    stripped.append({"path": info.filename, "size": info.file_size, "pattern": pat})
                    break
        if not drop:
            return []
        record_lines = zin.read(record_info).decode("utf-8").splitlines(keepends=True)
        kept_record = []
        for line in record_lines:
            path = _record_path(line)
            if path not in drop:
                kept_record.append(line)
        missing = drop - {_record_path(line) for line in record_lines}
        if missing:
            raise BundleError(f"{os.path.basename(src)}: stripped files not listed in RECORD: {sorted(missing)}")
        with zipfile.ZipFile(dst, "w", allowZip64=True) as zout:
            for info in infos:
                if info.filename in drop:
                    continue
                if info is record_info:
                    zout.writestr(_copy_info(info), "".join(kept_record).encode("utf-8"))
                    continue
                with zin.open(info) as fin, zout.open(_copy_info(info), "w", force_zip64=info.file_size > 2**31) as fout:
                    shutil.copyfileobj(fin, fout, CHUNK)
    return stripped


def _record_path(line: str) -> str:
    """The path field of a RECORD line (csv; a path with a comma is quoted)."""
    line = line.rstrip("\r\n")
    if line.startswith('"'):
        end = line.index('"', 1)
        while end + 1 < len(line) and line[end + 1] == '"':
            end = line.index('"', end + 2)
        return line[1:end].replace('""', '"')
    return line.split(",", 1)[0]


def _copy_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    new.compress_type = info.compress_type
    new.external_attr = info.external_attr
    new.create_system = info.create_system
    new.file_size = info.file_size
    return new


# --- split stream --------------------------------------------------------------------

class _PartWriter(io.RawIOBase):
    """A write-only stream that fills part-000.bin, part-001.bin, ... of `part_size` bytes."""

    def __init__(self, out_dir: str, part_size: int):
        self.out_dir, self.part_size = out_dir, part_size
        self.parts: list[dict] = []
        self._f = None
        self._h = None
        self._n = 0

    def writable(self):
        return True

    def _roll(self):
        self._close_part()
        name = PART.format(len(self.parts))
        self._f = open(os.path.join(self.out_dir, name), "wb")
        self._h = hashlib.sha256()
        self._n = 0
        self.parts.append({"file": name})

    def _close_part(self):
        if self._f is not None:
            self._f.close()
            self.parts[-1].update(size=self._n, sha256=self._h.hexdigest())
            self._f = None

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        total = len(view)
        while len(view):
            if self._f is None or self._n == self.part_size:
                self._roll()
            take = min(len(view), self.part_size - self._n)
            chunk = view[:take]
            self._f.write(chunk)
            self._h.update(chunk)
            self._n += take
            view = view[take:]
        return total

    def close(self):
        self._close_part()
        super().close()


# --- build ---------------------------------------------------------------------------

def manylinux_platforms(glibc: str, arch: str = "x86_64") -> list[str]:
    """Every manylinux tag a host with this glibc accepts, newest first, as pip would on it.

    pip download's --platform matches tags exactly; '2.39' gives manylinux_2_39_x86_64
    down to manylinux_2_17_x86_64, then manylinux2014/2010/1 (aliases of 2_17/2_12/2_5).
    """
    m = re.fullmatch(r"2\.(\d+)", glibc.strip())
    if not m or int(m.group(1)) < 17:
        raise BundleError(f"--glibc {glibc!r}: give the host's glibc as 2.N with N >= 17 (e.g. 2.39)")
    tags = [f"manylinux_2_{n}_{arch}" for n in range(int(m.group(1)), 16, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


def pip_download(requirements: list[tuple[str, str, str]], wheelhouse: str, python_version: str,
                 platforms: list[str], implementation: str = "cp", python: str = sys.executable) -> None:
    """`pip download --only-binary=:all: --no-deps` of exactly these pins for the target."""
    req_file = os.path.join(wheelhouse, ".requirements.txt")
    with open(req_file, "w", encoding="utf-8") as f:
        f.write("".join(f"{name}=={version}\n" for name, version, _ in requirements))
    cmd = [python, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
           "--python-version", python_version, "--implementation", implementation]
    for plat in platforms:
        cmd += ["--platform", plat]
    cmd += ["-d", wheelhouse, "-r", req_file]
    print("+ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    os.unlink(req_file)
    if rc != 0:
        raise BundleError(f"pip download failed (exit {rc}); see pip's message above. A missing wheel "
                          "for the target often needs another --platform tag (manylinux_2_N_x86_64).")


def select_wheels(wheelhouse: str, requirements: list[tuple[str, str, str]] | None,
                  excludes: set[str]) -> list[str]:
    """The wheel paths of the wheelhouse: one per requirement (all, without requirements)."""
    by_name: dict[str, list[str]] = {}
    for fn in sorted(os.listdir(wheelhouse)):
        if fn.endswith(".whl"):
            name, _ = wheel_name_version(fn)
            if name not in excludes:
                by_name.setdefault(name, []).append(fn)
    if requirements is None:
        dup = {n: f for n, f in by_name.items() if len(f) > 1}
        if dup:
            raise BundleError(f"{wheelhouse}: several wheels of one name: {dup}; keep one version of each")
        return [os.path.join(wheelhouse, f[0]) for f in by_name.values()]
    chosen, problems = [], []
    for name, version, line in requirements:
        match = [f for f in by_name.get(name, [])
                 if normalize_version(wheel_name_version(f)[1]) == normalize_version(version)]
        if len(match) != 1:
            have = by_name.get(name, [])
            problems.append(f"{line}: {'no wheel' if not match else 'several wheels'}"
                            + (f" (wheelhouse has {', '.join(have)})" if have else ""))
        else:
            chosen.append(os.path.join(wheelhouse, match[0]))
    if problems:
        raise BundleError(f"{wheelhouse}: the wheels do not match the requirements:\n  " + "\n  ".join(problems))
    return chosen


def build(*, out: str, requirements: str | None = None, wheelhouse: str | None = None,
          python_version: str | None = None, platforms: list[str] = (), implementation: str = "cp",
          excludes: list[str] = (), strips: list[str] = (), part_size: int = DEFAULT_PART_SIZE,
          keep_wheelhouse: str | None = None) -> dict:
    """Download (or take from `wheelhouse`) the wheels, strip, pack, split; write the manifest."""
    if requirements is None and wheelhouse is None:
        raise BundleError("bundle build: give --requirements (pip download) and/or --wheelhouse DIR")
    if wheelhouse is None and not platforms:
        raise BundleError("bundle build: pip download needs at least one --platform (e.g. manylinux_2_28_x86_64)")
    python_version = python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    excl = {normalize_name(e) for e in excludes}
    reqs = None
    if requirements is not None:
        reqs = read_requirements(requirements)
        unknown = excl - {n for n, _, _ in reqs}
        if unknown and wheelhouse is None:
            raise BundleError(f"--exclude {', '.join(sorted(unknown))}: not in {requirements}")
        reqs = [r for r in reqs if r[0] not in excl]
    os.makedirs(out, exist_ok=True)
    for fn in os.listdir(out):  # an earlier bundle in the same folder
        if PART_RE.match(fn) or fn in (MANIFEST, INSTALLER):
            os.unlink(os.path.join(out, fn))
    with tempfile.TemporaryDirectory(prefix="bundle-build-") as tmp:
        if wheelhouse is None:
            wheelhouse = keep_wheelhouse or os.path.join(tmp, "download")
            os.makedirs(wheelhouse, exist_ok=True)
            pip_download(reqs, wheelhouse, python_version, list(platforms), implementation)
        wheels = select_wheels(wheelhouse, reqs, excl)
        if not wheels:
            raise BundleError("no wheels to bundle")
        entries, strip_log, unused = [], [], set(strips)
        stripped_dir = os.path.join(tmp, "stripped")
        os.makedirs(stripped_dir)
        for path in wheels:
            fn = os.path.basename(path)
            name, version = wheel_name_version(fn)
            original = {"size": os.path.getsize(path), "sha256": sha256_file(path)}
            removed = strip_wheel(path, os.path.join(stripped_dir, fn), list(strips)) if strips else []
            if removed:
                path = os.path.join(stripped_dir, fn)
                unused -= {r["pattern"] for r in removed}
                strip_log.append({"wheel": fn, "original_size": original["size"],
                                  "original_sha256": original["sha256"], "removed": removed})
                print(f"stripped {fn}: {len(removed)} file(s), {mib(sum(r['size'] for r in removed))} "
                      f"unpacked ({', '.join(r['path'] for r in removed)})", flush=True)
            entries.append({"file": fn, "name": name, "version": version, "size": os.path.getsize(path),
                            "sha256": sha256_file(path) if removed else original["sha256"],
                            "stripped": bool(removed), "_path": path})
        if unused:
            raise BundleError(f"--strip {', '.join(sorted(unused))}: matched no file in any wheel")
        entries.sort(key=lambda e: e["file"])
        writer = _PartWriter(out, part_size)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for e in entries:
                info = tarfile.TarInfo(e["file"])
                info.size, info.mode, info.mtime = e["size"], 0o644, 0
                with open(e.pop("_path"), "rb") as f:
                    tar.addfile(info, f)
        writer.close()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": CREATED_BY,
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": {"python_version": python_version, "implementation": implementation,
                   "platforms": list(platforms)},
        "requirements": os.path.basename(requirements) if requirements else None,
        "excluded": sorted(excl),
        "strip_patterns": list(strips),
        "stripped": strip_log,
        "min_glibc": _min_glibc(entries),
        "wheels": entries,
        "wheels_size": sum(e["size"] for e in entries),
        "part_size": part_size,
        "parts": writer.parts,
        "total_size": sum(p["size"] for p in writer.parts),
    }
    with open(os.path.join(out, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    shutil.copyfile(bundle_install.__file__, os.path.join(out, INSTALLER))
    return manifest


def _min_glibc(entries: list[dict]) -> str | None:
    ns = [n for n in (wheel_min_glibc(e["file"]) for e in entries) if n is not None]
    return f"2.{max(ns)}" if ns else None


# --- command line --------------------------------------------------------------------

def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requirements", "-r", help="exact pins `name==version`, one per line")
    p.add_argument("--wheelhouse", help="take the wheels from this folder instead of pip download")
    p.add_argument("--python-version", help="target Python, e.g. 3.12 (default: this Python's)")
    p.add_argument("--platform", dest="platforms", action="append", default=[],
                   help="target platform tag for pip download, repeatable (manylinux_2_28_x86_64, ...)")
    p.add_argument("--glibc", metavar="2.N", help="add every manylinux tag a host with this glibc accepts "
                   "(2.39: manylinux_2_39 .. manylinux_2_17, manylinux2014, manylinux1)")
    p.add_argument("--arch", default="x86_64", help="machine for --glibc (default x86_64)")
    p.add_argument("--implementation", default="cp")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME", help="leave this distribution out")
    p.add_argument("--strip", action="append", default=[], metavar="GLOB",
                   help="drop files matching this archive-path glob from the wheels (e.g. sgl_kernel/flash_ops.*)")
    p.add_argument("--part-size", type=parse_size, default=DEFAULT_PART_SIZE, help="default 56MiB")
    p.add_argument("--keep-wheelhouse", metavar="DIR", help="download into DIR and keep it (re-use with --wheelhouse)")


def run_build(args) -> int:
    platforms = list(args.platforms)
    if args.glibc:
        platforms += [t for t in manylinux_platforms(args.glibc, args.arch) if t not in platforms]
    m = build(out=args.out, requirements=args.requirements, wheelhouse=args.wheelhouse,
              python_version=args.python_version, platforms=platforms, implementation=args.implementation,
              excludes=args.exclude, strips=args.strip, part_size=args.part_size,
              keep_wheelhouse=args.keep_wheelhouse)
    biggest = sorted(m["wheels"], key=lambda w: -w["size"])[:5]
    print(f"bundle {args.out}: {len(m['wheels'])} wheels, {len(m['parts'])} part(s) of at most "
          f"{mib(m['part_size'])}, {mib(m['total_size'])} in all; needs Python {m['target']['python_version']}"
          + (f", glibc >= {m['min_glibc']}" if m["min_glibc"] else ""))
    print("biggest: " + ", ".join(f"{w['name']} {w['version']} ({mib(w['size'])})" for w in biggest))
    return 0


def build_parser(prog: str = "bundle.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="offline wheel bundles: build here, install there")
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="download, strip, pack and split wheels into a bundle folder")
    add_build_arguments(b)
    b.set_defaults(fn=run_build)
    i = sub.add_parser("install", help="verify a bundle and pip-install it into a target folder")
    add_install_arguments(i)
    i.set_defaults(fn=run_install)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.fn(args)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
