"""The import rule of DESIGN.md: a layer imports only from layers below it; applications not from each other."""

import ast
from pathlib import Path

import lamina

ROOT = Path(lamina.__file__).parent
L0 = {"core", "config", "registry", "data", "optim", "schedules", "models"}
L1 = {"learner", "callbacks", "metrics", "losses", "export", "predict", "checkpoint"}
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
