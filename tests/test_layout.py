"""The house's import rules, read from the source (no import is executed).

- No import cycle among the package's modules, lazy (function-level) imports included: the
  backend used to import the plugin, which imported the backend inside a function.
- The schedule, the checkpoint reader and the per-forward store import nothing of SGLang:
  only `backend/` and `integration/` touch SGLang internals.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sglang_indexcache"
PKG = "sglang_indexcache"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


MODULES = {module_name(p): p for p in ROOT.rglob("*.py") if "_patches" not in p.parts}


def graph() -> dict:
    g = {}
    for name, path in MODULES.items():
        g[name] = {m for m in imports(path) if m in MODULES and m != name and not name.startswith(m + ".")}
    return g


def find_cycle(g: dict):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle_lazy_imports_included():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("module", [f"{PKG}.schedule", f"{PKG}.sharing", f"{PKG}.pipeline", f"{PKG}.kv_memory", f"{PKG}.checkpoint", f"{PKG}.backend.store"])
def test_pure_modules_import_no_sglang(module):
    found = {m for m in imports(MODULES[module]) if m == "sglang" or m.startswith("sglang.")}
    assert not found, f"{module} imports {sorted(found)}"


def test_only_backend_and_integration_reach_into_sglang_srt():
    allowed = (f"{PKG}.backend", f"{PKG}.integration")
    # elsewhere only SGLang's public plugin loader (bench runs one_batch with plugins loaded)
    outside = {name: sorted(m for m in imports(path) if m.startswith("sglang.srt.") and not m.startswith("sglang.srt.plugins"))
               for name, path in MODULES.items() if not name.startswith(allowed)}
    assert {k: v for k, v in outside.items() if v} == {}


def test_the_wheel_lists_every_package_and_the_data_the_code_reads():
    """setuptools installs only the packages pyproject names: until session 20 `bench` was not
    among them, so an installed wheel had no `python -m sglang_indexcache.bench` (the GPU host ran
    the checkout's copy). The BPE corpus the shape tokenizers train on is package data."""
    import fnmatch
    import tomllib

    st = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {module_name(p) for p in ROOT.rglob("__init__.py")}
    assert folders - set(st["packages"]) == set()
    from sglang_indexcache import tiny_model

    assert f"{PKG}.data" in st["packages"] and tiny_model.CORPUS.parent == ROOT / "data"
    assert any(fnmatch.fnmatch(tiny_model.CORPUS.name, pat) for pat in st["package-data"][f"{PKG}.data"])


def test_every_module_stays_readable_in_size():
    """The house's direction: files under about 400 lines (`bench/agentic.py` reached 403 in
    session 31 and gave its `/metrics` readers to `bench/server_metrics.py`)."""
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}, f"split these modules: {long}"
