"""Imports of the evaluation, reporting and provenance modules form no cycle, lazy imports included.

Every import of an obliviate module inside these packages is followed (at module level and inside
functions); the package root ``obliviate`` is left out, since importing any submodule runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "obliviate"
CHECKED = ("obliviate.evaluation", "obliviate.reporting", "obliviate.manifest", "obliviate.hashing", "obliviate.config",
           "obliviate.runs", "obliviate.pipeline", "obliviate.settings")


def _module_name(path: Path) -> str:
    return ".".join(("obliviate",) + path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("obliviate."):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycle_through_evaluation_reporting_or_manifest():
    graph = _import_graph()
    checked = [m for m in graph if m.startswith(CHECKED)]
    assert "obliviate.evaluation.suite" in checked and "obliviate.manifest" in checked

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [" -> ".join(c) for m in checked if (c := cycle_from(m))]
    assert not cycles, cycles


def test_reading_results_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, obliviate.reporting, obliviate.evaluation.result; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=None).returncode == 0
