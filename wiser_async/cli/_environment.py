"""A warning for each ``WISER_*`` environment variable the command line does not read.

A misspelt variable (``WISER_CONCURENCY``) is otherwise silently ignored
and the command runs with the default. Known are the variables of every
option of every command (read from the commands themselves, so a new
option is known at once) and those read beside them, listed below. The
warning names the variable, never its value (it may be a secret), with
the closest known name when one is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Final

import click

__all__ = ["known_variables", "unknown_variable_warnings"]

PREFIX: Final = "WISER_"
# Read beside the options' variables: the secrets' values (an option names
# a file instead), and the client secret a served sandbox process reads
# (wiser_async.sandbox, which `wiser-async sandbox` may start).
READ_BESIDES: Final = frozenset(
    {"WISER_CLIENT_SECRET", "WISER_TOKEN_KEYS", "WISER_SANDBOX_CLIENT_SECRET"}
)
# Deliberately not warned about: set where the command line runs, but read
# by something else of this project:
#   WISER_REQUIRE_REDIS, WISER_REQUIRE_BROWSER, WISER_REQUIRE_POSTGRES  the test suite's
#                                               switches (CI sets them);
#   WISER_TEST_TOKEN, WISER_TEST_CLIENT_SECRET  the test suite's helper processes.
# (The example web apps read EXAMPLE_* variables, not WISER_*.)
IGNORED: Final = frozenset(
    {
        "WISER_REQUIRE_REDIS",
        "WISER_REQUIRE_BROWSER",
        "WISER_REQUIRE_POSTGRES",
        "WISER_TEST_TOKEN",
        "WISER_TEST_CLIENT_SECRET",
    }
)
# How close (difflib's ratio of the names after WISER_) a known name must be to be suggested.
_CLOSE: Final = 0.6


def _option_variables(command: click.Command) -> Iterator[str]:
    for param in command.params:
        envvar = param.envvar
        if isinstance(envvar, str):
            yield envvar
        elif envvar:
            yield from envvar
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _option_variables(sub)


def known_variables(root: click.Command) -> frozenset[str]:
    """Every ``WISER_*`` variable the command line (its commands' options and more) reads."""
    return frozenset(_option_variables(root)) | READ_BESIDES


def unknown_variable_warnings(environ: Mapping[str, str], known: frozenset[str]) -> list[str]:
    """One warning line per ``WISER_*`` variable in `environ` that nothing reads (sorted)."""
    suffixes = {name.removeprefix(PREFIX): name for name in known if name.startswith(PREFIX)}
    lines = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known or name in IGNORED:
            continue
        line = f"warning: {name} is not a wiser-async setting; it is ignored"
        close = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1, cutoff=_CLOSE)
        if close:
            line += f" (did you mean {suffixes[close[0]]}?)"
        lines.append(line)
    return lines
