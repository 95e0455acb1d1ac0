"""The installing half of an offline wheel bundle (`bundle.py` builds it), copied into every
bundle as `install_bundle.py`. Installing needs only the standard library and pip, so on the
air-gapped host (where this package is not installed):

    python3 BUNDLE/install_bundle.py --from BUNDLE --target /tmp/sg

This file imports nothing outside the standard library and nothing from
`sglang_indexcache`, so that the copy runs on its own (also under `python -I -S`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

FORMAT = "sglang-indexcache-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INSTALLER = "install_bundle.py"
PART = "part-{:03d}.bin"
PART_RE = re.compile(r"^part-\d{3,}\.bin$")
CHUNK = 2**20


class BundleError(Exception):
    """A bundle cannot be built or installed; the message says which file and why."""

# --- small helpers -------------------------------------------------------------------

def host_glibc() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except (AttributeError, ValueError, OSError):
        return None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# --- the parts as one stream ----------------------------------------------------------

class _PartReader(io.RawIOBase):
    """The parts read back as one stream, in order."""

    def __init__(self, paths: list[str]):
        self._paths = list(paths)
        self._f = None

    def readable(self):
        return True

    def readinto(self, b) -> int:
        while True:
            if self._f is None:
                if not self._paths:
                    return 0
                self._f = open(self._paths.pop(0), "rb")
            n = self._f.readinto(b)
            if n:
                return n
            self._f.close()
            self._f = None

    def close(self):
        if self._f is not None:
            self._f.close()
        super().close()


# --- install -------------------------------------------------------------------------

def load_manifest(bundle: str) -> dict:
    path = os.path.join(bundle, MANIFEST)
    if not os.path.isfile(path):
        raise BundleError(f"{path}: missing; is {bundle} a bundle folder (manifest.json + part-*.bin)?")
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    if m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: format {m.get('format')!r} version {m.get('format_version')!r}; "
                          f"this installer reads {FORMAT!r} version {FORMAT_VERSION}")
    return m


def verify_parts(bundle: str, manifest: dict) -> list[str]:
    """Paths of the parts, in order, after checking each one's size and sha256."""
    problems, paths = [], []
    for p in manifest["parts"]:
        path = os.path.join(bundle, p["file"])
        paths.append(path)
        if not os.path.isfile(path):
            problems.append(f"{p['file']}: missing (expected {p['size']} bytes)")
            continue
        size = os.path.getsize(path)
        if size != p["size"]:
            problems.append(f"{p['file']}: {size} bytes, manifest says {p['size']} (truncated or wrong file?)")
            continue
        digest = sha256_file(path)
        if digest != p["sha256"]:
            problems.append(f"{p['file']}: sha256 {digest}, manifest says {p['sha256']} (corrupted)")
    listed = {p["file"] for p in manifest["parts"]}
    extra = sorted(f for f in os.listdir(bundle) if PART_RE.match(f) and f not in listed)
    if problems:
        raise BundleError(f"bundle {bundle}: {len(problems)} of {len(manifest['parts'])} part(s) bad; "
                          "copy them again:\n  " + "\n  ".join(problems))
    if extra:
        print(f"note: ignoring part files not in the manifest: {', '.join(extra)}", file=sys.stderr)
    return paths


def extract_wheels(part_paths: list[str], manifest: dict, dest: str) -> list[str]:
    """Unpack the tar stream into `dest`; check every wheel against the manifest."""
    expected = {w["file"]: w for w in manifest["wheels"]}
    got: dict[str, str] = {}
    with _PartReader(part_paths) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or name not in expected or "/" in name or name.startswith("."):
                raise BundleError(f"unexpected member {name!r} in the bundle stream (not a wheel of the manifest)")
            h = hashlib.sha256()
            src = tar.extractfile(member)
            with open(os.path.join(dest, name), "wb") as f:
                for block in iter(lambda: src.read(CHUNK), b""):
                    h.update(block)
                    f.write(block)
            got[name] = h.hexdigest()
    problems = []
    for fn, w in expected.items():
        if fn not in got:
            problems.append(f"{fn}: not in the stream")
        elif got[fn] != w["sha256"]:
            problems.append(f"{fn}: sha256 {got[fn]}, manifest says {w['sha256']}")
    if problems:
        raise BundleError("wheels do not match the manifest:\n  " + "\n  ".join(problems))
    return [os.path.join(dest, w["file"]) for w in manifest["wheels"]]


def python_version_of(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BundleError(f"cannot run {python}: {e}") from None
    return out


def install(*, bundle: str, target: str, python: str = sys.executable, dry_run: bool = False,
            tmp: str | None = None, check: bool = False, cross: bool = False) -> int:
    """Verify, unpack and `pip install --no-index --no-deps --target` the bundle's wheels.

    `cross`: install for the manifest's target Python and platforms with pip's
    cross-install options (--python-version, --platform), to test a bundle on the
    machine that built it; what lands in `target` is then not importable there.
    """
    manifest = load_manifest(bundle)
    part_paths = verify_parts(bundle, manifest)
    print(f"bundle {bundle}: {len(part_paths)} part(s), {mib(manifest['total_size'])}, "
          f"{len(manifest['wheels'])} wheels, checksums OK", flush=True)
    tgt = manifest["target"]
    want = tgt["python_version"]
    have = python_version_of(python)
    if have != want and not cross:
        msg = f"{python} is Python {have}, the bundle is for Python {want}"
        if not dry_run:
            raise BundleError(msg + "; pass --python with a Python " + want)
        print(f"note: {msg} (dry run: not installing)")
    need, glibc = manifest.get("min_glibc"), host_glibc()
    if need and glibc and not cross and glibc < tuple(int(x) for x in need.split(".")):
        msg = f"this host has glibc {glibc[0]}.{glibc[1]}, the bundle's wheels need glibc >= {need}"
        if not dry_run:
            raise BundleError(msg)
        print(f"note: {msg} (dry run: not installing)")
    with tempfile.TemporaryDirectory(prefix="bundle-install-", dir=tmp) as work:
        wheels = extract_wheels(part_paths, manifest, work)
        print(f"wheels unpacked to {work}: {len(wheels)}, sha256 OK", flush=True)
        # bytecode: compiled afterwards on every core (`compile_bytecode`), not by pip on one
        cmd = [python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
               "--disable-pip-version-check", "--no-warn-script-location", "--upgrade", "--no-compile",
               "--target", target]
        if cross:
            cmd += ["--only-binary=:all:", "--python-version", want,
                    "--implementation", tgt.get("implementation", "cp")]
            for plat in tgt.get("platforms") or []:
                cmd += ["--platform", plat]
        cmd += wheels
        if dry_run:
            for w in manifest["wheels"]:
                print(f"  {w['name']:32} {w['version']:20} {mib(w['size']):>10}"
                      + ("  (stripped)" if w.get("stripped") else ""))
            print("would run: " + " ".join(cmd[: len(cmd) - len(wheels)] + [f"<{len(wheels)} wheels>"]))
            return 0
        print(f"+ {' '.join(cmd[: len(cmd) - len(wheels)])} <{len(wheels)} wheels>", flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            raise BundleError(f"pip install failed (exit {rc}); see pip's message above")
    target = os.path.abspath(target)
    if cross:
        print(f"installed {len(manifest['wheels'])} wheels for Python {want} into {target} (cross-install: "
              "not importable by this Python)")
        return 0
    compile_bytecode(python, target)
    if check:
        env = dict(os.environ, PYTHONPATH=target + os.pathsep + os.environ.get("PYTHONPATH", ""))
        print("+ pip check (with the target first on PYTHONPATH):", flush=True)
        subprocess.call([python, "-m", "pip", "check"], env=env)
    print(f"installed {len(manifest['wheels'])} wheels into {target}; use them with:")
    print(f"export PYTHONPATH={target}${{PYTHONPATH:+:$PYTHONPATH}} PATH={target}/bin:$PATH")
    return 0


def compile_bytecode(python: str, target: str) -> None:
    """Byte-compile what was installed, as pip does by default, but on every core: pip compiles
    one file at a time (the GPU runtime's 27,000 files: about 47 s of one core on the build
    machine). Files that are not valid Python for this interpreter stay uncompiled, as under pip."""
    t0 = time.monotonic()
    rc = subprocess.call([python, "-m", "compileall", "-qq", "-j", "0", target],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"bytecode compiled in {time.monotonic() - t0:.1f} s on {os.cpu_count()} cores"
          + ("" if rc == 0 else " (some files are not valid Python here and stay uncompiled)"), flush=True)


# --- command line --------------------------------------------------------------------

def add_install_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="bundle", default=None,
                   help="bundle folder (default: this script's folder, if it holds manifest.json)")
    p.add_argument("--target", help="folder to install into (pip --target); required unless --dry-run")
    p.add_argument("--python", default=sys.executable, help="Python whose pip installs (default: this one)")
    p.add_argument("--dry-run", action="store_true", help="verify parts and wheels, list them, run no pip")
    p.add_argument("--tmp", help="where to unpack the wheels (default: $TMPDIR or /tmp)")
    p.add_argument("--check", action="store_true", help="run `pip check` with the target on PYTHONPATH afterwards")
    p.add_argument("--cross", action="store_true", help="install for the bundle's target Python/platform with "
                   "pip's --python-version/--platform (a test on the build machine; not importable here)")


def run_install(args) -> int:
    bundle = args.bundle
    if bundle is None:
        here = os.path.dirname(os.path.abspath(__file__))
        if not os.path.isfile(os.path.join(here, MANIFEST)):
            raise BundleError("give --from BUNDLE_DIR")
        bundle = here
    if not args.target and not args.dry_run:
        raise BundleError("give --target DIR (or --dry-run)")
    return install(bundle=bundle, target=args.target or "<target>", python=args.python,
                   dry_run=args.dry_run, tmp=args.tmp, check=args.check, cross=args.cross)


def build_parser(prog: str = "install_bundle.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="verify an offline wheel bundle and pip-install it into a folder")
    add_install_arguments(p)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["install"]:  # `install_bundle.py install --from ...`, as `bundle.py install`
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        return run_install(args)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
