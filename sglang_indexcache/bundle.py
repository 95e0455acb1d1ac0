"""Offline wheel bundles for air-gapped GPU hosts: `build` here, `install` there.

A bundle is a folder: `manifest.json`, one tar stream of wheels split into
`part-000.bin`, `part-001.bin`, ... (each at most --part-size bytes), and
`install_bundle.py`, a copy of `bundle_install.py`, the installing half, which needs only the
standard library and pip. This module builds; `sglang-indexcache bundle install` (or the
copy, on the host) installs. `bundle_wheels.py` holds the wheel side: names, versions and
platform tags (parsed without `packaging`, which the installing half cannot import: not in
every host's standard library, and the bundle is what would bring it), `pip download`, the
choice of one wheel per pin, `--strip`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile

from sglang_indexcache import bundle_install
from sglang_indexcache.bundle_install import (  # the installing half: the format, its error, its CLI
    FORMAT, FORMAT_VERSION, INSTALLER, MANIFEST, PART, PART_RE, BundleError, add_install_arguments, mib,
    run_install, sha256_file,
)
from sglang_indexcache.bundle_wheels import (  # the wheel side: names, tags, download, choice, strip
    manylinux_platforms, normalize_name, pip_download, read_requirements, select_wheels,
    strip_wheel, wheel_min_glibc, wheel_name_version,
)

CREATED_BY = "sglang-indexcache bundle (bundle.py, format 1)"
# a part and this checkout travel together in one device call, which carries at most 64 MiB:
# 40 MiB leaves 24 for the tracked tree, which grows with each session's committed results (60 MiB
# parts stopped fitting at 5.2 MB of it, 57 MiB pieces at 7.7 MB, both on 2026-12-01; 45 MiB ones
# at 20.2 MB, on 2026-12-02, by 0.3 MB; 40 MiB ones at 31 MB, on 2026-12-04: `resplit` cuts a built
# bundle again; session 33 moved benchmarks/results/ out of the work tree for the device calls, so
# 56 MiB parts fitted: README, "Staging through the device tool")
DEFAULT_PART_SIZE = 40 * 2**20


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


def resplit(sources: list[str], out: str, part_size: int) -> dict:
    """Cut a built bundle's parts again at `part_size`, without its wheels or a network.

    A part travels with this checkout in one device call (64 MiB at most), and the checkout grows
    with each session's results, so parts built a session ago can stop fitting. `sources` are the
    folders holding the parts (the manifest in any of them, each part in any of them); every part
    is checked against the manifest before it is read. The stream, so the wheels, is unchanged.
    """
    found = [d for d in sources if os.path.isfile(os.path.join(d, MANIFEST))]
    if not found:
        raise BundleError(f"no {MANIFEST} in {', '.join(sources)}")
    manifest = bundle_install.load_manifest(found[0])
    paths = []
    for p in manifest["parts"]:
        where = [d for d in sources if os.path.isfile(os.path.join(d, p["file"]))]
        if not where:
            raise BundleError(f"{p['file']}: in none of {', '.join(sources)}")
        paths.append(os.path.join(where[0], p["file"]))
    with tempfile.TemporaryDirectory() as links:  # one folder for verify_parts
        for path in paths:
            os.symlink(os.path.abspath(path), os.path.join(links, os.path.basename(path)))
        bundle_install.verify_parts(links, manifest)
    os.makedirs(out, exist_ok=True)
    if any(PART_RE.match(f) for f in os.listdir(out)) or os.path.exists(os.path.join(out, MANIFEST)):
        raise BundleError(f"{out}: already holds a bundle; give an empty folder")
    writer = _PartWriter(out, part_size)
    with bundle_install._PartReader(paths) as reader:
        shutil.copyfileobj(reader, writer, 4 * 2**20)
    writer.close()
    if sum(p["size"] for p in writer.parts) != manifest["total_size"]:
        raise BundleError(f"resplit wrote {sum(p['size'] for p in writer.parts)} bytes, "
                          f"the manifest says {manifest['total_size']}")
    manifest = dict(manifest, part_size=part_size, parts=writer.parts)
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
    p.add_argument("--part-size", type=parse_size, default=DEFAULT_PART_SIZE, help="default 40MiB")
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


def add_resplit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="DIR", help="folders holding the bundle's manifest and parts")
    p.add_argument("--out", required=True, help="an empty folder for the new parts")
    p.add_argument("--part-size", type=parse_size, required=True, help="e.g. 30MiB")


def run_resplit(args) -> int:
    m = resplit(args.sources, args.out, args.part_size)
    print(f"bundle {args.out}: {len(m['parts'])} part(s) of at most {mib(m['part_size'])}, "
          f"{mib(m['total_size'])} in all (the same stream, cut again)")
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
    r = sub.add_parser("resplit", help="cut a bundle's parts again at another size (no wheels, no network)")
    add_resplit_arguments(r)
    r.set_defaults(fn=run_resplit)
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
