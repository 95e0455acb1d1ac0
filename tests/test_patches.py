"""The patch-set tool on a copy of the installed SGLang: round trip, idempotence, refusals."""

import shutil
from pathlib import Path

import pytest

from sglang_indexcache import cli
from sglang_indexcache.integration.patches import (
    APPLIED,
    MODIFIED,
    PRISTINE,
    PatchError,
    PatchSet,
    SglangInstall,
    _sha256_record,
    apply_hunks,
    parse_unified_diff,
)


@pytest.fixture
def install_copy(tmp_path):
    """The files our patches touch plus SGLang's dist-info, copied from the real install."""
    real = SglangInstall.find()
    for name in ("METADATA", "RECORD"):
        dst = tmp_path / real.dist_info.name / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real.dist_info / name, dst)
    for _, text in PatchSet.patch_texts():
        for fp in parse_unified_diff(text):
            dst = tmp_path / fp.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(real.root / fp.path, dst)
    ps = PatchSet.load(tmp_path)
    ps.revert()  # the real install may be patched; start pristine
    assert ps.status().pristine
    return tmp_path


def test_round_trip(install_copy):
    ps = PatchSet.load(install_copy)
    install = SglangInstall(install_copy)
    before = {f.path: (install_copy / f.path).read_bytes() for f in ps.status().files}
    for path, data in before.items():  # pristine means: the wheel's own RECORD hash
        assert _sha256_record(data) == install.pristine_hash(path)

    assert ps.apply() == list(before)
    assert ps.status().applied
    assert ps.apply() == []  # idempotent
    assert all(f.state == APPLIED for f in ps.status().files)
    text = (install_copy / "sglang/srt/arg_groups/fields/model.py").read_text()
    assert "index_cache_pattern" in text and "index_cache_pp_handoff" in text

    assert ps.revert() == list(before)
    assert ps.revert() == []
    after = {p: (install_copy / p).read_bytes() for p in before}
    assert after == before


def test_apply_and_revert_never_write_through_a_hard_link(install_copy, tmp_path_factory):
    """uv hard-links site-packages to its cache: an in-place write patched the cache, and the next
    clean install (CI's) got half-patched files the tool then refused. Writes must replace files."""
    ps = PatchSet.load(install_copy)
    cache = tmp_path_factory.mktemp("uv-cache")
    linked = {}
    for f in ps.status().files:
        link = cache / f.path.replace("/", "_")
        link.hardlink_to(install_copy / f.path)  # the cache's copy and the install's: one inode
        linked[link] = link.read_bytes()
    mode = (install_copy / ps.status().files[0].path).stat().st_mode
    ps.apply()
    assert ps.status().applied
    assert {link: link.read_bytes() for link in linked} == linked
    assert (install_copy / ps.status().files[0].path).stat().st_mode == mode
    ps.revert()
    assert {link: link.read_bytes() for link in linked} == linked
    assert not list(install_copy.rglob("*.indexcache-tmp"))


def test_modified_file_is_refused_and_nothing_written(install_copy):
    ps = PatchSet.load(install_copy)
    target = install_copy / ps.status().files[0].path
    target.write_text(target.read_text() + "\n# local edit\n")
    edited = target.read_bytes()
    assert ps.status().files[0].state == MODIFIED
    with pytest.raises(PatchError, match="changed since install"):
        ps.apply()
    with pytest.raises(PatchError, match="changed since install"):
        ps.revert()
    assert target.read_bytes() == edited


def test_modified_after_apply_is_detected(install_copy):
    ps = PatchSet.load(install_copy)
    ps.apply()
    target = install_copy / ps.status().files[0].path
    target.write_text(target.read_text().replace("index_cache_freq", "index_cache_frequency"))
    assert not ps.status().applied
    assert cli.main(["patch", "check", "--target", str(install_copy)]) == 1


def test_wrong_version_is_refused(install_copy):
    meta = next(install_copy.glob("sglang-*.dist-info")) / "METADATA"
    meta.write_text(meta.read_text().replace("Version: 0.5.23", "Version: 0.5.22"))
    with pytest.raises(PatchError, match=r"for SGLang 0\.5\.23, but SGLang 0\.5\.22 is installed"):
        PatchSet.load(install_copy)
    assert cli.main(["patch", "status", "--target", str(install_copy)]) == 2


def test_cli_check_apply_revert(install_copy, capsys):
    t = ["--target", str(install_copy)]
    assert cli.main(["patch", "check", *t]) == 1
    assert cli.main(["patch", "apply", *t]) == 0
    assert cli.main(["patch", "check", *t]) == 0
    assert cli.main(["patch", "revert", *t]) == 0
    out = capsys.readouterr().out
    n = sum(len(files) for _, files in PatchSet.load(install_copy).patches)
    assert f"applied: {n} file(s) written" in out and f"reverted: {n} file(s) written" in out


def test_installed_sglang_is_patched():
    # `make install` applies the set; the tests below rely on the real flags existing.
    assert PatchSet.load().status().applied


DIFF = """--- a/x.py
+++ b/x.py
@@ -1,3 +1,4 @@
 a
+inserted
 b
 c
@@ -5,2 +6,2 @@
 e
-f
+F
"""


def test_apply_and_reverse_exact():
    (fp,) = parse_unified_diff(DIFF)
    old = "a\nb\nc\nd\ne\nf\n"
    new = apply_hunks(old, fp.hunks)
    assert new == "a\ninserted\nb\nc\nd\ne\nF\n"
    assert apply_hunks(new, fp.hunks, reverse=True) == old
    with pytest.raises(PatchError, match="does not match"):
        apply_hunks(old.replace("e\n", "E\n"), fp.hunks)
    with pytest.raises(PatchError, match="does not match"):
        apply_hunks(old, fp.hunks, reverse=True)


def test_patch_files_parse():
    texts = PatchSet.patch_texts()
    assert texts, "no patches found in the package"
    for name, text in texts:
        assert parse_unified_diff(text, name)
