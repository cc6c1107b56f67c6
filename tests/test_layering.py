"""Package layering: no import cycle among qkern's modules (read with ast, nothing imported), the package
namespace holds only the library API, and `import qkern` loads neither the tools nor torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import qkern

PACKAGE_DIR = Path(qkern.__file__).parent


def module_name(path: Path) -> str:
    parts = ("qkern", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the qkern modules it imports anywhere in its source (top level, functions, TYPE_CHECKING
    blocks). `from . import x` counts as an import of the submodule x, not of the package's __init__,
    which Python has always run before any of its modules."""
    modules = {module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + ([base] if node.module else [])
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    assert "qkern.requant_params" in graph["qkern.reference.requant"]  # from ..requant_params import Requant
    assert "qkern.reference.requant" in graph["qkern.requant"]  # imported inside requantize()
    assert "qkern._checks" in graph["qkern.ops"]  # from . import _checks as V
    assert "qkern.tools.validate" in graph["qkern.tools.cmd_validate"]  # from . import validate, in main()


def test_no_import_cycle_inside_qkern():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_library_modules_never_import_the_tools():
    graph = import_graph()
    offenders = {m: sorted(t for t in deps if t.startswith("qkern.tools")) for m, deps in graph.items()}
    entry_points = ("qkern.tools", "qkern.__main__")  # `python -m qkern` runs the CLI
    assert {m: d for m, d in offenders.items() if d and not m.startswith(entry_points)} == {}


def test_package_namespace_is_the_library_api():
    assert not {"cli", "bench", "bench_conv", "bench_smoke", "validate", "tools"} & set(qkern.__all__)
    code = textwrap.dedent("""
        import sys, qkern
        loaded = sorted(m for m in sys.modules if m.startswith("qkern.tools") or m == "torch")
        print(loaded)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
