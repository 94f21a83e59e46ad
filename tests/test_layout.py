"""Size rules for lamina's source: no file over 400 lines and no function over 50, so each stays readable in one sitting.

A file that grows past the limit is split along a seam (see `lamina.losses_base` / `lamina.losses`, or
`lamina.models.archs` / `lamina.models.bodies`), keeping the old import path by re-export. Only data, which is read
rather than followed, may be longer; each such file is named in `DATA_FILES` with the reason.
"""

import ast
from pathlib import Path

import lamina

ROOT = Path(lamina.__file__).parent
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 50

# Files under lamina/ exempt from the line limit, relative to lamina/, each with why it is data and not code.
DATA_FILES = {
    "assets/pets_sample.tgz": "a gzip archive of sample images for the demo (binary data, not lines of code)",
}


def package_files(root: Path) -> list[Path]:
    """Every file of the package except Python's byte-code caches."""
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def too_long_files(root: Path, allowed: dict[str, str]) -> list[str]:
    return [f"{p.relative_to(root).as_posix()}: {n} lines" for p in package_files(root)
            if p.relative_to(root).as_posix() not in allowed and (n := line_count(p)) > MAX_FILE_LINES]


def too_long_functions(root: Path) -> list[str]:
    """``file:line name: N lines`` for each function or method longer than the limit (decorators not counted)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_file_is_over_400_lines():
    problems = too_long_files(ROOT, DATA_FILES)
    assert not problems, (f"Files over {MAX_FILE_LINES} lines (split each along a seam and re-export from the old "
                          "module; only data files may be listed in DATA_FILES, with the reason):\n"
                          + "\n".join(problems))


def test_the_data_allow_list_names_files_that_exist():
    missing = [name for name in DATA_FILES if not (ROOT / name).is_file()]
    assert not missing, f"DATA_FILES names files that are gone; remove them from the list: {missing}"


def test_no_function_is_over_50_lines():
    problems = too_long_functions(ROOT)
    assert not problems, (f"Functions over {MAX_FUNCTION_LINES} lines (move a step into a named helper):\n"
                          + "\n".join(problems))


def test_the_file_check_sees_long_files_and_skips_the_allowed_and_caches(tmp_path):
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "short.py").write_text("x = 1\n")
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    (tmp_path / "table.csv").write_text("1\n" * (MAX_FILE_LINES + 1))
    (tmp_path / "__pycache__" / "long.cpython-311.pyc").write_bytes(b"\n" * (MAX_FILE_LINES + 1))
    assert too_long_files(tmp_path, {"table.csv": "data"}) == [f"long.py: {MAX_FILE_LINES + 1} lines"]
    assert len(too_long_files(tmp_path, {})) == 2


def _function(name: str, n_lines: int, indent: str = "") -> str:
    """Source of a function of exactly ``n_lines`` lines from ``def`` on, after one decorator line."""
    body = "".join(f"{indent}    y{i} = {i}\n" for i in range(n_lines - 1))
    return f"{indent}@staticmethod\n{indent}def {name}():\n{body}"


def test_the_function_check_counts_from_def_to_the_last_line_in_methods_too(tmp_path):
    (tmp_path / "funcs.py").write_text(_function("fits", MAX_FUNCTION_LINES) + "\n\nclass C:\n"
                                       + _function("too_long", MAX_FUNCTION_LINES + 1, indent="    "))
    def_line = 1 + MAX_FUNCTION_LINES + 2 + 1 + 1 + 1  # decorator, fits(), 2 blank lines, class C:, decorator
    assert too_long_functions(tmp_path) == [f"funcs.py:{def_line} too_long: {MAX_FUNCTION_LINES + 1} lines"]
