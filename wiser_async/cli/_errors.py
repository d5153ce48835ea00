"""One-line error reporting, exit codes and interruption messages of the command line.

Exit codes: 0 done (a crawl: complete), 1 a result that is not all it could
be (a crawl with parts missing or unfinished, a diff with differences, a token
not found), 2 a usage, configuration or output error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from token_stores import TokenStoreError

from ..errors import CrawlOutputError, WiserError

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "CliError",
    "CliGroup",
    "on_interrupt",
    "redact_store_spec",
    "reported",
    "warn",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_INTERRUPT_KEY = "wiser_async.interrupt_message"
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


class CliError(click.ClickException):
    """A user error: shown as one ``error: ...`` line on stderr, exit code 2 by default."""

    exit_code = EXIT_USAGE


def warn(message: str) -> None:
    """A note on stderr that does not stop the command."""
    click.echo(message, err=True)


def on_interrupt(message: str) -> None:
    """What to say if Ctrl-C stops the running command (default: ``Interrupted.``)."""
    click.get_current_context().find_root().meta[_INTERRUPT_KEY] = message


def redact_store_spec(spec: str) -> str:
    """A store spec as it may be shown: a URL's user and password replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", spec)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class CliGroup(click.Group):
    """The root group: every error is one line on stderr, Ctrl-C exits 130 everywhere.

    click would print a usage block for a usage error and turn Ctrl-C into
    "Aborted!" with exit code 1; here a usage error is one ``error:`` line
    (exit 2) and an interruption says what fits the command (exit 130).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):
            message = ctx.meta.get(_INTERRUPT_KEY, "Interrupted.")
            # A new line first: the terminal echoed ^C where the cursor was.
            click.echo(f"\n{message}", err=True)
            sys.exit(EXIT_INTERRUPTED)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            message = _one_line(exc.format_message())
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                message += f" (see {exc.ctx.command_path} --help)"
            click.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("\nInterrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


@contextmanager
def reported(*, store: str | None = None) -> Iterator[None]:
    """Turn the library's errors into one-line `CliError` messages (exit code 2).

    Args:
        store: The ``--store`` spec in use, named in store errors.
    """
    try:
        yield
    except CliError:
        raise
    except CrawlOutputError as exc:
        raise CliError(_one_line(str(exc)).replace("without resume", "without --resume")) from None
    except TokenStoreError as exc:
        where = f" (--store {redact_store_spec(store)})" if store is not None else ""
        raise CliError(f"token store{where}: {_one_line(str(exc))}") from None
    except WiserError as exc:
        raise CliError(_one_line(str(exc))) from None
    except OSError as exc:
        raise CliError(_os_error(exc)) from None


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return _one_line(str(exc)) or reason
