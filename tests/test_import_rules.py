"""lamina's import rules: DESIGN.md's layers (a layer imports only from layers below it; applications not from each
other), and no import cycle between any two lamina modules.

Both rules read the source, so they see every ``import`` and ``from ... import`` statement, including the lazy ones
inside functions: a lazy import still ties the two modules together, it only hides the cycle until run time.
"""

import ast
from pathlib import Path

import pytest

import lamina

ROOT = Path(lamina.__file__).parent
L0 = {"core", "config", "cpu_memory", "atomic", "book_names", "book_tools", "book_helpers", "pickle_forms", "registry", "foundation", "torch_core",
      "compiled", "distributed", "distributed_shm", "figures", "data", "optim", "optim_fused", "optimizer", "steppers",
      "schedules", "models"}
L1 = {"learner", "callbacks", "callback", "metrics", "losses", "losses_base", "export", "predict", "checkpoint", "onnx", "tta"}
APPS = {"vision", "tabular", "collab", "text", "interpret"}
SURFACES = {"vision/all.py", "tabular/all.py", "text/all.py", "collab/__init__.py", "basics.py", "cli.py", "testing.py",
            "demo.py"}


def layer_of(top: str) -> int:
    if top in L0:
        return 0
    if top in L1:
        return 1
    return 2 if top in APPS else 3


def lamina_imports(path: Path) -> set[str]:
    """Top-level lamina subpackages/modules imported by ``path`` (absolute or relative imports)."""
    tree = ast.parse(path.read_text())
    rel_parts = path.relative_to(ROOT).parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel_parts[:-node.level]) if node.level <= len(rel_parts) - 1 else []
                mod = base + (node.module.split(".") if node.module else [])
                if not mod:
                    mod = [alias.name for alias in node.names]
                found.update([mod[0]] if mod else [])
            elif node.module and node.module.startswith("lamina."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lamina."))
    return found


def test_no_upward_imports():
    problems = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if str(rel) in SURFACES or rel.name == "__init__.py" and rel.parts[0] == "collab":
            continue
        top = rel.parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        for imported in lamina_imports(path):
            if imported in ("__init__",):
                continue
            if layer_of(imported) > layer_of(top):
                problems.append(f"{rel} imports lamina.{imported}")
            if top in APPS and imported in APPS and imported != top:
                problems.append(f"{rel} (application {top}) imports application {imported}")
    assert not problems, "Upward imports:\n" + "\n".join(problems)


# --- cycles ----------------------------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    """``lamina/data/block.py`` -> ``lamina.data.block``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The lamina modules that ``path`` imports, wherever the statement is (lazy imports in functions count).

    ``from package import name`` imports the submodule ``package.name`` when there is one, else the package
    (whose ``__init__`` defines ``name``). `importlib.import_module` calls are not statements and are not seen:
    `lamina.registry.registered` imports the registering modules that way, by a fixed tuple of names, only when
    an export is read or written; it is no import edge of ``lamina.registry``.
    """
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _known(base, modules))
    return {m for m in found if m is not None and m != this}


def _known(name: str, modules: set[str]) -> str | None:
    """``name`` or its longest prefix that is a lamina module (``lamina.data.block.X`` -> ``lamina.data.block``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the lamina modules it imports, for every module under ``root``."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    return {module_name(p, root): imported_modules(p, root, modules) for p in paths}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next((m for m in edges if m in graph), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe_cycle(component: list[str], graph: dict[str, set[str]]) -> str:
    """One cycle through the component's first module, as ``a -> b -> a``, and the edges inside it."""
    members = set(component)
    path, seen = [component[0]], {component[0]}
    while True:
        step = next(m for m in sorted(graph[path[-1]]) if m in members)
        if step in seen:
            cycle = path[path.index(step):] + [step]
            break
        path.append(step)
        seen.add(step)
    edges = sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in members)
    return " -> ".join(cycle) + "\n    (edges: " + "; ".join(edges) + ")"


def test_no_import_cycles():
    graph = import_graph(ROOT)
    cycles = strongly_connected(graph)
    assert not cycles, "Import cycles between lamina modules:\n" + "\n".join(
        describe_cycle(c, graph) for c in cycles)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_the_cycle_finder_sees_lazy_and_relative_imports(tmp_path):
    root = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import thing\n",
        "pkg/b.py": "def f():\n    from pkg.sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from .. import a\nimport pkg.d\n",
        "pkg/d.py": "import importlib\nimportlib.import_module('pkg.a')\n",
    })
    graph = import_graph(root)
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.d"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.d"] == set()
    cycles = strongly_connected(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert describe_cycle(cycles[0], graph).startswith("pkg.a -> pkg.b -> pkg.sub.c -> pkg.a")


@pytest.mark.parametrize("files", [
    {"pkg/__init__.py": "from .a import x\n", "pkg/a.py": "x = 1\n"},  # a package re-exporting its module
    {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import os\n"},
])
def test_the_cycle_finder_passes_acyclic_packages(tmp_path, files):
    assert strongly_connected(import_graph(write(tmp_path, files))) == []
