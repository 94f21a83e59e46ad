"""Error helpers of the data pipeline: readable step names and exceptions re-raised with the failing item named."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["step_name", "getter_name", "ReadableKeyError", "error_name", "renamed_error"]


def step_name(step: Any) -> str:
    """A readable name for a pipeline step or transform (a function's name, else its class name)."""
    return getattr(step, "__name__", None) or getattr(getattr(step, "func", None), "__name__", None) \
        or type(step).__name__


def getter_name(step: Any) -> str:
    """How an error names a getter: a function by its name (``parent_label``), a configured getter by its repr
    (``ColReader('label')``, ``RegexLabeller('^(.+)_\\d+')``), which says what it reads."""
    if getattr(step, "__name__", None) or isinstance(step, functools.partial):
        return step_name(step)
    return repr(step) if type(step).__repr__ is not object.__repr__ else step_name(step)


class ReadableKeyError(KeyError):
    """A KeyError whose message prints as written (a plain KeyError prints the repr of its message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def error_name(e: Exception) -> str:
    """The exception's class name as users know it."""
    return "KeyError" if isinstance(e, ReadableKeyError) else type(e).__name__


def renamed_error(e: Exception, message: str) -> Exception:
    """An exception of the same type as ``e`` carrying ``message`` (RuntimeError if that type cannot be built)."""
    if isinstance(e, KeyError) and type(e) in (KeyError, ReadableKeyError):
        return ReadableKeyError(message)
    try:
        new = type(e)(message)
    except Exception:  # exception types with other constructors (UnicodeDecodeError ...)
        new = RuntimeError(message)
    return new
