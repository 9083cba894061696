"""convgen's modules import one way: no import cycles, and no imports of convgen modules hidden
inside functions (where they hide a cycle until the function runs), except in the CLI.

Every module under ``convgen/`` is parsed with :mod:`ast`; every ``from .x import``, ``from
convgen.x import`` and ``import convgen.x`` (at module level or inside a function) is an edge.
``from . import name`` where ``name`` is no submodule is an edge to the package itself (it
reads the half-initialized ``convgen/__init__``), and importing ``a.b.c`` also runs
``a/b/__init__``: an edge there too, unless the importer lives inside ``a.b`` already.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = "convgen"

#: Modules that may import convgen modules inside functions: the command line (lazy
#: subcommands), mutation testing (each forked child forgets the generator's modules and
#: imports the mutated ones afresh: an import at the top would judge the unmutated code) and
#: its mutants (Cosmic Ray, which the mutation operators subclass, is optional).
LAZY_ALLOWED = {"convgen.cli", "convgen.mutate", "convgen.mutants"}

#: The runtime's layers, bottom to top: a runtime module imports only lower-ranked siblings.
RUNTIME_RANK = {"convgen.runtime.call": 0, "convgen.runtime.cache": 0,
                "convgen.runtime.cbuild": 1, "convgen.runtime.nvcc": 1,
                "convgen.runtime.gpu": 2, "convgen.runtime.pocl": 2, "convgen.runtime.cross": 2,
                "convgen.runtime.network": 2, "convgen.runtime": 3}
#: What the runtime may import from outside itself, and (where restricted) which names.
RUNTIME_ALLOWED = {"convgen.errors": None, "convgen.resources": None, "convgen.symbolic": None,
                   "convgen.isa": {"ladder"},
                   "convgen.spec": None, "convgen.spec.network": None,
                   "convgen.netgen": {"NetworkC", "generate_network"},
                   "convgen.codegen": {"GeneratedKernel", "generate", "generator_hash", "harness"},
                   "convgen.cudagen": {"CudaKernel", "Launch", "generate_cuda", "MAX_GRID_Z"}}
#: Modules that must pass every check now; the rest of the package follows once merged.
SCOPE = ("convgen.runtime", "convgen.verify", "convgen.emit", "convgen.exhaustive",
         "convgen.taint")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str
    line: int
    lazy: bool              # inside a function
    names: tuple = ()       # the names a ``from`` import takes (empty: the module itself)
    how: str = ""           # "via package": the parent package an import runs

    def __str__(self) -> str:
        reads = MODULES.get(self.target, Path()).name == "__init__.py" and self.names
        notes = [n for n in ("inside a function" if self.lazy else "", self.how,
                             f"reads {', '.join(self.names)}" if reads else "") if n]
        note = f" ({', '.join(notes)})" if notes else ""
        return f"{self.source} -> {self.target} at {self.path}:{self.line}{note}"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    """The package a module's relative imports start from."""
    is_package = MODULES[module].name == "__init__.py"
    return module if is_package else module.rpartition(".")[0]


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(module: str, node: ast.AST) -> list[tuple[str, tuple]]:
    """``(convgen module, names)`` that one import statement loads."""
    if isinstance(node, ast.Import):
        found = []
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                name = alias.name
                while name not in MODULES:  # import convgen.x.attr: the longest module
                    name = name.rpartition(".")[0]
                found.append((name, ()))
        return found
    if node.level:
        base = _package_of(module)
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        origin = f"{base}.{node.module}" if node.module else base
    else:
        origin = node.module or ""
        if origin != PACKAGE and not origin.startswith(PACKAGE + "."):
            return []
    found, names = [], []
    for alias in node.names:
        sub = f"{origin}.{alias.name}"
        if sub in MODULES:  # from .runtime import gpu: the submodule
            found.append((sub, ()))
        else:
            names.append(alias.name)
    if names:
        found.append((origin, tuple(names)))
    return found


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str):
        self.module, self.depth, self.edges = module, 0, []

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node):
        """``if TYPE_CHECKING:`` imports never run: they are no edges (the else branch is)."""
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _import(self, node):
        path = MODULES[self.module].relative_to(ROOT).as_posix()
        own = set(_ancestors(self.module)) | {self.module}
        for target, names in _targets(self.module, node):
            self.edges.append(Edge(self.module, target, path, node.lineno, self.depth > 0,
                                   names))
            for parent in _ancestors(target):  # importing a.b.c runs a/b/__init__ first
                if parent not in own:
                    self.edges.append(Edge(self.module, parent, path, node.lineno,
                                           self.depth > 0, (), "via package"))

    visit_Import = visit_ImportFrom = _import


def _edges() -> list[Edge]:
    edges = []
    for module, path in MODULES.items():
        collector = _Collector(module)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        edges += collector.edges
    return edges


EDGES = _edges()


def _in_scope(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SCOPE)


def _cycles(edges: list[Edge]) -> list[list[Edge]]:
    """The edges inside each strongly connected component (every module of one can reach
    every other): empty when the graph is acyclic."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(node):  # Tarjan; the graph is small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for component in components:
        inside = sorted((e for e in edges if e.source in component and e.target in component),
                        key=lambda e: (e.source, e.target, e.line))
        if len(component) > 1 or inside:
            cycles.append(inside)
    return sorted(cycles, key=lambda c: (c[0].source, c[0].target))


def _describe_cycles(cycles: list[list[Edge]]) -> str:
    text = []
    for cycle in cycles:
        members = sorted({e.source for e in cycle})
        text.append(f"import cycle among {', '.join(members)}; the imports inside it:\n"
                    + "\n".join(f"    {edge}" for edge in cycle))
    return "\n".join(text)


def _lazy(edges: list[Edge]) -> list[Edge]:
    return [e for e in edges if e.lazy and e.source not in LAZY_ALLOWED]


# --------------------------------------------------------------------------- the checks


def test_the_parser_sees_the_package():
    """A guard for the checks below: they see every module and the imports that exist."""
    assert {"convgen", "convgen.runtime", "convgen.runtime.call", "convgen.verify",
            "convgen.cli"} <= set(MODULES)
    pairs = {(e.source, e.target) for e in EDGES}
    assert ("convgen", "convgen.runtime") in pairs
    assert ("convgen.runtime.cbuild", "convgen.runtime.call") in pairs
    assert ("convgen.verify", "convgen.runtime.cbuild") in pairs
    assert ("convgen.verify", "convgen.runtime") in pairs  # runs runtime/__init__
    assert any(e.source == "convgen.cli" and e.lazy for e in EDGES)
    ring = [Edge("a", "b", "a.py", 1, False), Edge("b", "c", "b.py", 2, True),
            Edge("c", "a", "c.py", 3, False), Edge("c", "d", "c.py", 4, False)]
    (cycle,) = _cycles(ring)
    assert [(e.source, e.target) for e in cycle] == [("a", "b"), ("b", "c"), ("c", "a")]
    assert _cycles(ring[:2]) == []
    assert len(_cycles([Edge("a", "a", "a.py", 1, False)])) == 1


def test_runtime_verify_and_emit_import_nothing_inside_functions():
    lazy = [e for e in _lazy(EDGES) if _in_scope(e.source)]
    assert not lazy, "imports of convgen modules inside functions:\n" + "\n".join(map(str, lazy))


def test_runtime_imports_only_downward():
    """runtime/ imports only errors, resources, symbolic, spec and the public names of codegen
    and cudagen from outside, and only lower layers from inside (call, cache < cbuild, nvcc <
    gpu, pocl < __init__)."""
    wrong = []
    for edge in EDGES:
        if edge.source not in RUNTIME_RANK or edge.how:
            continue
        if edge.target in RUNTIME_RANK:
            if RUNTIME_RANK[edge.target] >= RUNTIME_RANK[edge.source]:
                wrong.append(f"{edge}: not a lower runtime layer")
        elif edge.target not in RUNTIME_ALLOWED:
            wrong.append(f"{edge}: runtime/ may not import {edge.target}")
        else:
            allowed = RUNTIME_ALLOWED[edge.target]
            if allowed is not None and (not edge.names or set(edge.names) - allowed):
                wrong.append(f"{edge}: takes {list(edge.names) or 'the module'}; only "
                             f"{sorted(allowed)} are public")
    assert set(RUNTIME_RANK) == {m for m in MODULES if m.startswith("convgen.runtime")}
    assert not wrong, "\n".join(wrong)


def test_nothing_below_imports_verify_emit_or_the_cli():
    # the package itself exposes verify as a public module (convgen.verify), the top of the
    # graph like the command line; mutation testing judges kernels with it
    importers = {"convgen.verify": {"convgen.cli", "convgen", "convgen.mutate"},
                 "convgen.emit": {"convgen.cli"},
                 "convgen.cli": {"convgen.__main__"}}
    wrong = [str(e) for e in EDGES if e.target in importers
             and e.source not in importers[e.target]]
    assert not wrong, "\n".join(wrong)


def test_runtime_verify_and_emit_are_in_no_import_cycle():
    """Every cycle through runtime/, verify or emit, not counting out-of-scope modules that
    read the package root (``from . import __version__``: the whole-package test reports
    those)."""
    edges = [e for e in EDGES if _in_scope(e.source) or e.target != PACKAGE]
    cycles = [c for c in _cycles(edges) if any(_in_scope(e.source) for e in c)]
    assert not cycles, _describe_cycles(cycles)


def test_the_whole_package_is_acyclic_with_no_imports_inside_functions():
    problems = []
    cycles = _cycles(EDGES)
    if cycles:
        problems.append(_describe_cycles(cycles))
    lazy = _lazy(EDGES)
    if lazy:
        problems.append("imports of convgen modules inside functions (only the CLI may):\n"
                        + "\n".join(f"    {e}" for e in lazy))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


#: The generator's layers, left to right (GUIDE section 1): a module imports only modules of
#: its own layer or of layers to its left.
GENERATOR_LAYERS = [
    ("convgen._version", "convgen.errors", "convgen.resources", "convgen.isa",
     "convgen.solver", "convgen.symbolic", "convgen.printing"),
    ("convgen.spec",),
    ("convgen.lower",),
    ("convgen.schedules", "convgen.winograd"),
    ("convgen.targets",),
    ("convgen.codegen", "convgen.cudagen"),
    ("convgen.runtime",),
]


def _layer_of(module: str) -> int | None:
    for rank, prefixes in enumerate(GENERATOR_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_the_generator_imports_only_to_its_left():
    """spec -> lower -> schedules -> targets -> codegen/cudagen -> runtime: no arrow back."""
    backwards = [e for e in EDGES if _layer_of(e.source) is not None
                 and _layer_of(e.target) is not None
                 and _layer_of(e.target) > _layer_of(e.source)]
    assert not backwards, "\n".join(str(e) for e in backwards)
