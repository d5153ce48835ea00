"""The error a library module raises when an optional extra it needs is missing.

One line naming ``pip install 'wiser-async[EXTRA]'`` instead of a bare
``No module named ...``.
"""

from __future__ import annotations

__all__ = ["extra_missing"]


def extra_missing(what: str, extra: str, error: ImportError) -> ModuleNotFoundError:
    """A `ModuleNotFoundError` saying which extra `what` needs (raise it ``from error``).

    Args:
        what: What needs the module, as a user names it.
        extra: The extra of ``pyproject.toml`` that installs it.
        error: The failed import.
    """
    name = error.name or "a module"
    return ModuleNotFoundError(
        f"{what} needs {name}, which is not installed: pip install 'wiser-async[{extra}]'",
        name=error.name,
    )
