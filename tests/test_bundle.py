"""The offline bundle: build from a wheelhouse, split, verify, strip, install (standalone too)."""

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from sglang_indexcache import bundle, bundle_wheels, cli

REPO = Path(__file__).resolve().parents[1]


def make_wheel(where: Path, name: str, version: str, files: dict) -> Path:
    """A minimal valid pure-Python wheel with METADATA, WHEEL and a hashed RECORD."""
    dist = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for path, data in files.items():
        data = data.encode() if isinstance(data, str) else data
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        w.writerow([path, f"sha256={digest}", len(data)])
    w.writerow([f"{dist}/RECORD", "", ""])
    files[f"{dist}/RECORD"] = out.getvalue()
    path = where / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, data in files.items():
            z.writestr(p, data)
    return path


@pytest.fixture
def wheelhouse(tmp_path):
    wh = tmp_path / "wheelhouse"
    wh.mkdir()
    make_wheel(wh, "alpha", "1.0", {"alpha.py": "VALUE = 'alpha'\n"})
    # incompressible payload, so the tar stream spans several small parts
    make_wheel(wh, "beta_pkg", "2.0.1", {
        "beta_pkg/__init__.py": "from beta_pkg.core import VALUE\n",
        "beta_pkg/core.py": "VALUE = 'beta'\n",
        "beta_pkg/blob.bin": os.urandom(150_000),
        "beta_pkg/flash_ops.abi3.so": os.urandom(90_000),
    })
    make_wheel(wh, "gamma", "0.3", {"gamma/__init__.py": "from alpha import VALUE as A\nVALUE = A + '+gamma'\n"})
    return wh


def build(tmp_path, wheelhouse, *extra, out="bundle"):
    out = tmp_path / out
    rc = bundle.main(["build", "--wheelhouse", str(wheelhouse), "--out", str(out), "--part-size", "64KiB", *extra])
    assert rc == 0
    return out, json.loads((out / "manifest.json").read_text())


def run_py(code, target, *flags):
    env = dict(os.environ, PYTHONPATH=str(target))
    return subprocess.run([sys.executable, *flags, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def wheels_in_stream(out: Path, manifest) -> dict:
    data = b"".join((out / p["file"]).read_bytes() for p in manifest["parts"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_parse_size():
    assert bundle.parse_size("60MiB") == 60 * 2**20
    assert bundle.parse_size("62MB") == 62_000_000
    assert bundle.parse_size("64KiB") == 65536
    assert bundle.parse_size("1000") == 1000
    with pytest.raises(bundle.BundleError):
        bundle.parse_size("lots")


def test_build_splits_and_install_imports(tmp_path, wheelhouse, capsys):
    out, m = build(tmp_path, wheelhouse)
    assert m["format"] == "sglang-indexcache-bundle" and m["format_version"] == 1
    assert [w["name"] for w in m["wheels"]] == ["alpha", "beta-pkg", "gamma"]
    assert m["wheels"][1]["version"] == "2.0.1"
    # the stream is split at exactly the part size; only the last part is shorter
    sizes = [(out / p["file"]).stat().st_size for p in m["parts"]]
    assert len(sizes) >= 4 and max(sizes) <= 65536 and all(s == 65536 for s in sizes[:-1])
    assert sizes == [p["size"] for p in m["parts"]] and sum(sizes) == m["total_size"]
    assert sorted(os.listdir(out)) == sorted(["manifest.json", "install_bundle.py"] + [p["file"] for p in m["parts"]])
    for name, data in wheels_in_stream(out, m).items():
        w = next(w for w in m["wheels"] if w["file"] == name)
        assert hashlib.sha256(data).hexdigest() == w["sha256"] and len(data) == w["size"]

    target = tmp_path / "site"
    capsys.readouterr()
    assert bundle.main(["install", "--from", str(out), "--target", str(target)]) == 0
    printed = capsys.readouterr().out
    assert f"export PYTHONPATH={target}" in printed
    # pip installs without compiling; the installer then compiles every module on all cores
    assert "--no-compile" in printed and "bytecode compiled in " in printed
    tag = sys.implementation.cache_tag
    compiled = sorted(p.name for p in target.glob(f"**/__pycache__/*.{tag}.pyc"))
    assert len(compiled) >= 3 and compiled == sorted(
        f"{p.stem}.{tag}.pyc" for p in target.glob("**/*.py") if p.parent.name != "bin")
    got = run_py("import alpha, beta_pkg, gamma; print(alpha.VALUE, beta_pkg.VALUE, gamma.VALUE)", target)
    assert got.split() == ["alpha", "beta", "alpha+gamma"]


def test_tampered_part_is_named(tmp_path, wheelhouse, capsys):
    out, m = build(tmp_path, wheelhouse)
    part = out / "part-001.bin"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    capsys.readouterr()
    for extra in ([], ["--dry-run"]):
        assert bundle.main(["install", "--from", str(out), "--target", str(tmp_path / "t"), *extra]) == 2
        err = capsys.readouterr().err
        assert "part-001.bin: sha256" in err and "corrupted" in err and "part-000.bin" not in err
    assert not (tmp_path / "t").exists()


def test_missing_and_truncated_parts_are_named(tmp_path, wheelhouse, capsys):
    out, m = build(tmp_path, wheelhouse)
    (out / "part-002.bin").unlink()
    (out / "part-000.bin").write_bytes((out / "part-000.bin").read_bytes()[:-1])
    capsys.readouterr()
    assert bundle.main(["install", "--from", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "2 of" in err and "part-002.bin: missing" in err and "part-000.bin: 65535 bytes, manifest says 65536" in err


def test_tampered_wheel_in_a_consistent_stream_is_caught(tmp_path, wheelhouse, capsys):
    out, m = build(tmp_path, wheelhouse)
    m["wheels"][0]["sha256"] = "0" * 64  # parts verify, the wheel does not
    (out / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert bundle.main(["install", "--from", str(out), "--dry-run"]) == 2
    assert "alpha-1.0-py3-none-any.whl: sha256" in capsys.readouterr().err


def test_dry_run_lists_and_installs_nothing(tmp_path, wheelhouse, capsys):
    out, m = build(tmp_path, wheelhouse)
    capsys.readouterr()
    assert bundle.main(["install", "--from", str(out), "--target", str(tmp_path / "t"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "checksums OK" in printed and "sha256 OK" in printed and "would run:" in printed
    assert "beta-pkg" in printed and "2.0.1" in printed
    assert not (tmp_path / "t").exists()


def test_strip_keeps_record_consistent(tmp_path, wheelhouse):
    out, m = build(tmp_path, wheelhouse, "--strip", "beta_pkg/**/flash_ops.*")
    beta = next(w for w in m["wheels"] if w["name"] == "beta-pkg")
    assert beta["stripped"] is True
    (log,) = m["stripped"]
    assert log["wheel"] == beta["file"] and log["removed"] == [
        {"path": "beta_pkg/flash_ops.abi3.so", "size": 90_000, "pattern": "beta_pkg/**/flash_ops.*"}]
    assert log["original_size"] > beta["size"]
    data = wheels_in_stream(out, m)[beta["file"]]
    assert hashlib.sha256(data).hexdigest() == beta["sha256"]  # the manifest has the rewritten wheel's hash
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = set(z.namelist())
        assert "beta_pkg/flash_ops.abi3.so" not in names and "beta_pkg/blob.bin" in names
        record = list(csv.reader(io.StringIO(z.read("beta_pkg-2.0.1.dist-info/RECORD").decode())))
        assert {row[0] for row in record} == names  # every file listed, nothing else
        for path, digest, size in record:
            if digest:
                body = z.read(path)
                want = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={want}" and int(size) == len(body)
    target = tmp_path / "site"
    assert bundle.main(["install", "--from", str(out), "--target", str(target)]) == 0
    assert not (target / "beta_pkg" / "flash_ops.abi3.so").exists()
    assert run_py("import beta_pkg; print(beta_pkg.VALUE)", target).strip() == "beta"


def test_strip_refuses_metadata_and_unmatched_patterns(tmp_path, wheelhouse, capsys):
    capsys.readouterr()
    for pattern, why in (("*.dist-info/METADATA", "the wheel's metadata"), ("nothing/*.so", "matched no file")):
        rc = bundle.main(["build", "--wheelhouse", str(wheelhouse), "--out", str(tmp_path / "b"), "--strip", pattern])
        assert rc == 2 and why in capsys.readouterr().err


def test_requirements_select_and_exclude(tmp_path, wheelhouse, capsys):
    req = tmp_path / "req.txt"
    req.write_text("# comment\nalpha==1.0\nBeta_Pkg==2.0.1  # note\ngamma==0.3\n")
    out, m = build(tmp_path, wheelhouse, "--requirements", str(req), "--exclude", "gamma")
    assert [w["name"] for w in m["wheels"]] == ["alpha", "beta-pkg"] and m["excluded"] == ["gamma"]
    req.write_text("alpha==1.0\nbeta-pkg==9.9\n")
    capsys.readouterr()
    rc = bundle.main(["build", "--wheelhouse", str(wheelhouse), "--requirements", str(req), "--out", str(tmp_path / "c")])
    assert rc == 2 and "beta-pkg==9.9: no wheel (wheelhouse has beta_pkg-2.0.1-py3-none-any.whl)" in capsys.readouterr().err
    req.write_text("alpha>=1.0\n")
    rc = bundle.main(["build", "--wheelhouse", str(wheelhouse), "--requirements", str(req), "--out", str(tmp_path / "c")])
    assert rc == 2 and "not an exact pin" in capsys.readouterr().err


def test_wrong_python_refuses_to_install(tmp_path, wheelhouse, capsys):
    out, _ = build(tmp_path, wheelhouse, "--python-version", "3.99")
    capsys.readouterr()
    assert bundle.main(["install", "--from", str(out), "--target", str(tmp_path / "t")]) == 2
    assert "the bundle is for Python 3.99" in capsys.readouterr().err
    assert bundle.main(["install", "--from", str(out), "--dry-run"]) == 0  # a dry run only notes it


def test_manylinux_tags_and_min_glibc():
    tags = bundle_wheels.manylinux_platforms("2.34")
    assert tags[0] == "manylinux_2_34_x86_64" and "manylinux_2_17_x86_64" in tags and tags[-1] == "manylinux1_x86_64"
    assert bundle_wheels.wheel_min_glibc("x-1-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl") == 17
    assert bundle_wheels.wheel_min_glibc("x-1-cp312-cp312-manylinux_2_34_x86_64.whl") == 34
    assert bundle_wheels.wheel_min_glibc("x-1-py3-none-any.whl") is None
    with pytest.raises(bundle.BundleError):
        bundle_wheels.manylinux_platforms("2.5")


def test_standalone_installer_runs_isolated(tmp_path, wheelhouse):
    """install_bundle.py needs only the standard library: -I -S keeps even site-packages away."""
    out, _ = build(tmp_path, wheelhouse)
    installer = out / "install_bundle.py"
    assert installer.read_text() == (REPO / "sglang_indexcache" / "bundle_install.py").read_text()
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-I", "-S", str(installer), "--from", str(out), "--target", str(target),
                        "--python", sys.executable], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"export PYTHONPATH={target}" in r.stdout
    assert run_py("import gamma; print(gamma.VALUE)", target).strip() == "alpha+gamma"
    # -I alone, the bundle folder found next to the script, a bad part reported by name
    (out / "part-000.bin").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-I", str(installer), "--target", str(tmp_path / "t2")],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "part-000.bin: 1 bytes" in r.stderr
    # `install` first, as `bundle.py install` takes it; the installing half has no `build`
    r = subprocess.run([sys.executable, "-I", str(installer), "install", "--from", str(out), "--dry-run"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "part-000.bin: 1 bytes" in r.stderr
    r = subprocess.run([sys.executable, "-I", str(installer), "build", "--out", str(tmp_path / "b")],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "unrecognized arguments: build" in r.stderr


def test_cli_bundle_subcommand(tmp_path, wheelhouse, capsys):
    out = tmp_path / "via-cli"
    assert cli.main(["bundle", "build", "--wheelhouse", str(wheelhouse), "--out", str(out)]) == 0
    assert "3 wheels, 1 part(s)" in capsys.readouterr().out
    assert cli.main(["bundle", "install", "--from", str(out), "--dry-run"]) == 0
    assert cli.main(["bundle", "install", "--from", str(tmp_path / "nowhere"), "--dry-run"]) == 2
    assert "manifest.json: missing" in capsys.readouterr().err


def test_jit_cache_packs_and_restores_without_locks(tmp_path):
    """`gpu_host.sh jit-pack` takes the kernels SGLang compiled on one host (~/.cache/sglang, where
    SGLang points its own JIT cache and DeepGEMM's, Triton's, FlashInfer's and the driver's), locks
    and half-built entries left out; `jit-restore` (which `install` runs for BUNDLE/jit-cache.tgz,
    else the checkout's benchmarks/jit/ cache) puts them under another host's home. A host where
    no server ran is refused by name."""
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_host.sh"
    built = tmp_path / "h1" / ".cache" / "sglang"
    (built / "jit" / "sm90" / "mod" / "build-k" / "deps-d").mkdir(parents=True)
    (built / "jit" / "sm90" / "mod" / "build-k" / "deps-d" / "mod.so").write_bytes(b"\x7fELF kernel")
    (built / "jit" / "sm90" / "mod" / "build-k" / ".staging-1").mkdir()
    (built / "jit" / "sm90" / "mod" / "build-k" / ".staging-1" / "half.so").write_bytes(b"partial")
    (built / "deep_gemm" / "locks").mkdir(parents=True)
    (built / "deep_gemm" / "locks" / "group.lock").write_text("")
    (built / "deep_gemm" / "cache" / "kernel.fp8_gemm.abc").mkdir(parents=True)
    (built / "deep_gemm" / "cache" / "kernel.fp8_gemm.abc" / "kernel.cubin").write_bytes(b"cubin")

    def run(home, *args):
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                              env={**os.environ, "HOME": str(home)})

    tgz = tmp_path / "jit-cache.tgz"
    packed = run(tmp_path / "h1", "jit-pack", str(tgz))
    assert packed.returncode == 0, packed.stderr
    assert "jit-pack: 2 files" in packed.stdout
    restored = run(tmp_path / "h2", "jit-restore", str(tgz))
    assert restored.returncode == 0, restored.stderr
    home2 = tmp_path / "h2" / ".cache" / "sglang"
    got = sorted(str(p.relative_to(home2)) for p in home2.rglob("*") if p.is_file())
    assert got == ["deep_gemm/cache/kernel.fp8_gemm.abc/kernel.cubin", "jit/sm90/mod/build-k/deps-d/mod.so"]
    assert (home2 / "jit" / "sm90" / "mod" / "build-k" / "deps-d" / "mod.so").read_bytes() == b"\x7fELF kernel"
    empty = run(tmp_path / "h3", "jit-pack", str(tmp_path / "none.tgz"))
    assert empty.returncode == 2 and "no server has run here" in empty.stderr


def test_tracked_h200_kernel_cache_holds_only_sglang_cache_files(tmp_path):
    """The kernel cache the checkout carries to a GPU host (benchmarks/jit/, unpacked by
    `gpu_host.sh install` into ~/.cache/sglang) holds plain files and folders under
    .cache/sglang only, no links, no absolute or parent paths, and restores as .tar.xz."""
    import os
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parents[1]
    cache = root / "benchmarks" / "jit" / "h200-sglang-0.5.23.tar.xz"
    with tarfile.open(cache) as tar:
        members = tar.getmembers()
    assert len(members) > 100
    for m in members:
        assert m.isfile() or m.isdir(), m.name
        assert m.name == ".cache/sglang" or m.name.startswith(".cache/sglang/"), m.name
        assert ".." not in Path(m.name).parts and not m.name.startswith("/"), m.name
    restored = subprocess.run(["bash", str(root / "scripts" / "gpu_host.sh"), "jit-restore", str(cache)],
                              capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)})
    assert restored.returncode == 0, restored.stderr
    n = sum(1 for m in members if m.isfile())
    assert f"jit-restore: {n} files under" in restored.stdout


def test_resplit_cuts_the_same_stream_again_and_installs(tmp_path, wheelhouse, capsys):
    out, m = build(tmp_path, wheelhouse)
    # as staged for the device: one folder per part, the manifest with the first
    pieces = []
    for i, p in enumerate(m["parts"]):
        d = tmp_path / f"piece-{i:02d}"
        d.mkdir()
        (out / p["file"]).rename(d / p["file"])
        pieces.append(str(d))
    (out / "manifest.json").rename(Path(pieces[0]) / "manifest.json")
    again = tmp_path / "again"
    assert cli.main(["bundle", "resplit", *pieces, "--out", str(again), "--part-size", "40KiB"]) == 0
    assert "part(s) of at most 0.0 MiB" in capsys.readouterr().out
    m2 = json.loads((again / "manifest.json").read_text())
    sizes = [p["size"] for p in m2["parts"]]
    assert m2["part_size"] == 40960 and len(sizes) > len(m["parts"])
    assert all(s == 40960 for s in sizes[:-1]) and sum(sizes) == m["total_size"] == m2["total_size"]
    assert {k: v for k, v in m2.items() if k not in ("part_size", "parts")} == \
        {k: v for k, v in m.items() if k not in ("part_size", "parts")}
    assert wheels_in_stream(again, m2) == wheels_in_stream_from(pieces, m)
    target = tmp_path / "site"
    assert bundle.main(["install", "--from", str(again), "--target", str(target)]) == 0
    assert run_py("import gamma; print(gamma.VALUE)", target).split() == ["alpha+gamma"]
    # refused: a folder that already holds a bundle, a corrupted part, a part nowhere
    assert bundle.main(["resplit", *pieces, "--out", str(again), "--part-size", "40KiB"]) == 2
    assert "already holds a bundle" in capsys.readouterr().err
    part = Path(pieces[1]) / m["parts"][1]["file"]
    data = bytearray(part.read_bytes())
    data[7] ^= 0xFF
    part.write_bytes(bytes(data))
    assert bundle.main(["resplit", *pieces, "--out", str(tmp_path / "bad"), "--part-size", "40KiB"]) == 2
    assert f"{m['parts'][1]['file']}: sha256" in capsys.readouterr().err
    part.unlink()
    assert bundle.main(["resplit", *pieces, "--out", str(tmp_path / "bad2"), "--part-size", "40KiB"]) == 2
    assert f"{m['parts'][1]['file']}: in none of" in capsys.readouterr().err


def wheels_in_stream_from(folders, manifest) -> dict:
    data = b"".join(next(Path(d) / p["file"] for d in folders if (Path(d) / p["file"]).exists()).read_bytes()
                    for p in manifest["parts"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}
