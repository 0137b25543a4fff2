"""The house rules of issue 19, checked on the source: imports flow one way (no circle, with
function-level imports counted), no module over 500 lines, one engine on the predict path."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("predictor", "profiling")
MAX_LINES = 500


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """Project modules ``name`` imports anywhere in its body (explicit imports only: the
    implicit import of a parent package is not an edge)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_no_import_circles():
    cycles = _cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_profiling_never_imports_predictor():
    bad = {m: sorted(t for t in ts if t.startswith("predictor"))
           for m, ts in import_graph().items() if m.startswith("profiling")}
    assert not {m: t for m, t in bad.items() if t}


@pytest.mark.parametrize("path", sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)}: {n} lines (at most {MAX_LINES})"


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# module-level public names still without a docstring: temporary, to be emptied (an entry that
# gains a docstring must leave this set -- the test below says so)
UNDOCUMENTED_ALLOWED: set[str] = set()


def _undocumented(source: str) -> list[str]:
    """Module-level public functions and classes of ``source`` that have no docstring."""
    return [n.name for n in ast.parse(source).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and not n.name.startswith("_") and ast.get_docstring(n) is None]


def test_public_names_have_docstrings():
    found = {f"{p.relative_to(ROOT).as_posix()}::{name}"
             for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
             for name in _undocumented(p.read_text())}
    assert not found - UNDOCUMENTED_ALLOWED, \
        "public names without a docstring:\n" + "\n".join(sorted(found - UNDOCUMENTED_ALLOWED))
    assert not UNDOCUMENTED_ALLOWED - found, \
        f"documented now, drop from UNDOCUMENTED_ALLOWED: {sorted(UNDOCUMENTED_ALLOWED - found)}"


def test_docstring_finder_finds_a_missing_one():
    src = ('def f():\n    """Doc."""\n\ndef g():\n    pass\n\nclass C:\n    x: int\n\n'
           'def _private():\n    pass\n\nasync def h():\n    return 1\n')
    assert _undocumented(src) == ["g", "C", "h"]
