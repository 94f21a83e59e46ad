"""Where lamina keeps its files, and the environment variables that move them.

``LAMINA_HOME`` (default ``~/.lamina``) holds four folders:

* ``data/``: extracted datasets (``untar_data`` puts ``<archive stem>/`` here),
* ``archive/``: the downloaded archives,
* ``models/``: pretrained weights and exported learners,
* ``cache/``: what lamina derives once and reuses (spaCy's tokenizer rules, `lamina.text.spacy_rules`).

``LAMINA_DATA_URL`` replaces the base of the dataset URLs (a mirror or an
air-gapped server). ``LAMINA_PROGRESS`` (``bar``, ``line`` or ``none``) chooses how training and
downloads report progress (`progress_mode`). Every value is read when asked for, never cached at import,
so tests and users can change the environment at any time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["lamina_home", "lamina_path", "data_url_base", "in_notebook", "progress_mode", "PROGRESS_MODES"]

_FOLDERS = ("data", "archive", "models", "cache")


def lamina_home() -> Path:
    """The root folder of lamina's files: ``$LAMINA_HOME`` or ``~/.lamina``."""
    return Path(os.environ.get("LAMINA_HOME", "~/.lamina")).expanduser()


def lamina_path(folder: str = "data") -> Path:
    """One of lamina's folders (``'data'``, ``'archive'``, ``'models'`` or ``'cache'``), created if missing.

    Raises:
        ValueError: if ``folder`` is not one of the four names.
    """
    if folder not in _FOLDERS:
        raise ValueError(f"`folder` must be one of {_FOLDERS}; received: folder={folder!r}")
    path = lamina_home() / folder
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_url_base() -> str | None:
    """The mirror that replaces dataset URL bases, from ``$LAMINA_DATA_URL`` (None when unset)."""
    base = os.environ.get("LAMINA_DATA_URL", "").strip()
    return base.rstrip("/") + "/" if base else None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tables are shown as HTML and bars as widgets)."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


PROGRESS_MODES = ("bar", "line", "none")


def progress_mode() -> str:
    """How progress is reported: ``$LAMINA_PROGRESS`` when set, else ``'bar'`` in a notebook or when standard
    error is a terminal, and ``'line'`` (a line per epoch, no redrawn bars) when it is a file or a pipe (CI logs,
    ``nohup``, ``2> log.txt``).

    ``'bar'``: bars redrawn in place and the epoch table; ``'line'``: the epoch table only, a line per epoch;
    ``'none'``: neither (the learner still records everything).

    Raises:
        ValueError: when ``$LAMINA_PROGRESS`` holds anything else.
    """
    value = os.environ.get("LAMINA_PROGRESS", "").strip().lower()
    if value:
        if value not in PROGRESS_MODES:
            raise ValueError(f"LAMINA_PROGRESS must be one of {', '.join(PROGRESS_MODES)}; received: "
                             f"LAMINA_PROGRESS={value!r}. Unset it to choose by the output (bars in a terminal or "
                             "a notebook, a line per epoch otherwise)")
        return value
    if in_notebook():
        return "bar"
    isatty = getattr(sys.stderr, "isatty", None)
    return "bar" if isatty is not None and isatty() else "line"
