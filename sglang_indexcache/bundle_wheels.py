"""The wheel side of an offline bundle (`bundle.py` builds it): wheel names, versions and
platform tags parsed without `packaging` (the installing half reads names the same way, with
the standard library only), the requirements file, `pip download` for the target, the choice
of one wheel per pin, and `--strip` (files dropped from a wheel with its RECORD lines)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile

from sglang_indexcache.bundle_install import CHUNK, BundleError

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
