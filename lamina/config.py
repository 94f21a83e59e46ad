"""Where lamina keeps its files, and the environment variables that move them.

``LAMINA_HOME`` (default ``~/.lamina``) holds three folders:

* ``data/``: extracted datasets (``untar_data`` puts ``<archive stem>/`` here),
* ``archive/``: the downloaded archives,
* ``models/``: pretrained weights and exported learners.

``LAMINA_DATA_URL`` replaces the base of the dataset URLs (a mirror or an
air-gapped server). Every value is read when asked for, never cached at import,
so tests and users can change the environment at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["lamina_home", "lamina_path", "data_url_base"]

_FOLDERS = ("data", "archive", "models")


def lamina_home() -> Path:
    """The root folder of lamina's files: ``$LAMINA_HOME`` or ``~/.lamina``."""
    return Path(os.environ.get("LAMINA_HOME", "~/.lamina")).expanduser()


def lamina_path(folder: str = "data") -> Path:
    """One of lamina's folders (``'data'``, ``'archive'`` or ``'models'``), created if missing.

    Raises:
        ValueError: if ``folder`` is not one of the three names.
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
