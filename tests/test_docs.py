"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link, reference or docstring
section fails), and the guide's code blocks name only what lamina has."""

import ast
import builtins
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDE = [DOCS / "index.md", DOCS / "install.md", *sorted((DOCS / "guide").glob("*.md"))]
# names a guide's snippet may use without defining them: what the page's earlier text has set up
CONTEXT = {"learn", "dls", "path", "df", "build", "uint8_images"}


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the dev extra installs mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the dev extra installs mkdocstrings[python]")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(tmp_path / "site")], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "learner" / "index.html").read_text().count("lamina.learner.Learner.fit") > 0
    assert (tmp_path / "site" / "guide" / "migrating" / "index.html").exists()


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def _star_surface(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lamina"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*":
                    names |= set(module.__all__)
                else:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                    names.add(alias.asname or alias.name)
    return names


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            names |= {a.arg for a in [*node.args.args, *node.args.kwonlyargs]}
            names |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None}
        if isinstance(node, ast.comprehension):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


@pytest.mark.parametrize("page", GUIDE, ids=lambda p: p.stem)
def test_guide_code_names_what_lamina_has(page):
    from lamina.learner import Learner
    from lamina.testing import synth_classification, tiny_mlp
    learner = Learner(synth_classification(n=64), tiny_mlp())
    blocks = _python_blocks(page)
    surface: set[str] = set()
    for block in blocks:
        tree = ast.parse(block)  # every block is valid Python
        surface |= _star_surface(tree)  # a page's later blocks build on its first import
        known = surface | _defined(tree) | CONTEXT | set(dir(builtins))
        unknown = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in known}
        assert not unknown, f"{page.name}: {sorted(unknown)} not defined by lamina's surface:\n{block}"
        for node in ast.walk(tree):  # learn.<name>: a Learner attribute, method or callback
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "learn" \
                    and node.attr not in {"epochs_done"}:  # set by load
                assert hasattr(learner, node.attr), f"{page.name}: a Learner has no {node.attr!r}"


def test_guide_has_the_pages_the_nav_names():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in GUIDE:
        assert str(page.relative_to(DOCS)) in nav
    for page in ("architecture.md", "decisions.md", "security.md", "tracking.md"):
        assert page in nav and (DOCS / page).exists()


def test_install_page_says_how_to_get_a_cpu_only_torch():
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in (DOCS / "install.md").read_text()


def test_license_is_the_one_pyproject_names():
    pyproject = (ROOT / "pyproject.toml").read_text()
    text = (ROOT / "LICENSE").read_text()
    assert 'license = {text = "Apache-2.0"}' in pyproject
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it


def test_readme_keeps_its_two_commands_first_and_points_to_the_docs():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "python -m lamina.demo" in first_block and "python -m pytest -q" in first_block
    assert readme.index("## Start here") < readme.index("## Documentation")
    assert all((ROOT / name).exists() for name in ("CHANGELOG.md", "CONTRIBUTING.md", "docs/index.md"))
