"""Which extra installs a missing module: one line naming ``pip install 'wiser-async[EXTRA]'``.

Imports nothing outside the standard library: the command line's entry point
reads it before it knows whether click is there.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLI_MODULES", "EXTRAS", "install_command", "missing_extra"]

EXTRAS: Final = {
    "click": "cli",
    "rich": "cli",
    "uvicorn": "cli",
    "redis": "redis",
    "cryptography": "encryption",
    "aiohttp": "aiohttp",
    "httpx_aiohttp": "aiohttp",
    "fastapi": "fastapi",
    "opentelemetry": "otel",
    "psycopg": "postgres",
}
"""Top-level module -> the extra of pyproject.toml that installs it."""

CLI_MODULES: Final = ("click", "rich")
"""What every command needs: without them, ``wiser-async`` says so and does nothing else."""


def install_command(extra: str) -> str:
    """``pip install 'wiser-async[EXTRA]'``."""
    return f"pip install 'wiser-async[{extra}]'"


def missing_extra(error: ImportError) -> str | None:
    """One line saying which extra to install, if `error` is a module an extra installs.

    The library's own messages come first: an ImportError that already
    names ``pip install`` is kept as it is.
    """
    text = " ".join(str(error).split())
    if "pip install" in text:
        return text
    name = (error.name or "").partition(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    return f"{name} is not installed: {install_command(extra)}"
