"""Run code in a fresh Python process, as a user loading an export in another session would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_fresh(code: str, cwd: str | Path | None = None, timeout: float = 120) -> str:
    """``code`` run by a new interpreter; its stdout (the test fails with the process's stderr if it fails)."""
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         timeout=timeout, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout


def fresh_json(code: str, cwd: str | Path | None = None, timeout: float = 120) -> Any:
    """The JSON value that ``code``, run in a new interpreter, prints on its last line."""
    return json.loads(run_fresh(code, cwd, timeout).strip().splitlines()[-1])
