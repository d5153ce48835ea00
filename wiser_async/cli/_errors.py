"""One-line error reporting, exit codes and interruption messages of the command line.

Exit codes: 0 done (a crawl: complete), 1 a result that is not all it could
be (a crawl with parts missing or unfinished, a diff with differences, a token
not found), 2 a usage, configuration or output error, 130 interrupted (Ctrl-C).

Every error a command meets is said here, in one place (`describe_error`):
one line, the cause in words, never a secret and never a traceback. Errors
raised together (an exception group: two slots of a worker failing at once)
are one line too, each distinct message once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import click

from token_stores import TokenStoreError, redact_store_spec

from .._distributed import QueueUnavailable, describe_redis_error
from ..errors import CrawlOutputError, WiserError
from ._extras import missing_extra

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "CliError",
    "CliGroup",
    "describe_error",
    "on_interrupt",
    "reported",
    "warn",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_INTERRUPT_KEY = "wiser_async.interrupt_message"
# Distinct messages of errors raised together that one line shows; the rest are counted.
_SHOWN_TOGETHER: Final = 3


class CliError(click.ClickException):
    """A user error: shown as one ``error: ...`` line on stderr, exit code 2 by default."""

    exit_code = EXIT_USAGE


def warn(message: str) -> None:
    """A note on stderr that does not stop the command."""
    click.echo(message, err=True)


def on_interrupt(message: str) -> None:
    """What to say if Ctrl-C stops the running command (default: ``Interrupted.``)."""
    click.get_current_context().find_root().meta[_INTERRUPT_KEY] = message


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _leaves(error: BaseException) -> list[BaseException]:
    """The errors of a group, groups within it opened; a lone error as itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _interrupted(error: BaseException) -> bool:
    return any(isinstance(leaf, KeyboardInterrupt | click.Abort) for leaf in _leaves(error))


def _redis_error(error: BaseException) -> bool:
    """A redis-py error (without importing redis, which is an extra)."""
    exceptions = sys.modules.get("redis.exceptions")
    return exceptions is not None and isinstance(error, exceptions.RedisError)


def describe_error(
    error: BaseException,
    *,
    store: str | None = None,
    redis: str | None = None,
    redis_timeout: float | None = None,
    restart: str | None = None,
) -> str | None:
    """What a command says of `error`, in one line; None for an error it does not expect (a bug).

    Args:
        error: What was raised, or an exception group of several errors
            raised together (each distinct message is said once).
        store: The ``--store`` spec in use, named in token store errors.
        redis: The ``--redis`` URL in use, named in Redis errors.
        redis_timeout: Its connect timeout, named when it ran out.
        restart: The flag that starts an output again, named where the
            library says to start again without resume.
    """
    if isinstance(error, BaseExceptionGroup):
        messages: list[str] = []
        for leaf in _leaves(error):
            message = describe_error(
                leaf, store=store, redis=redis, redis_timeout=redis_timeout, restart=restart
            )
            if message is None:
                return None
            if message not in messages:
                messages.append(message)
        return _together(messages)
    if isinstance(error, click.ClickException):
        return _one_line(error.format_message())
    where = f"--redis {redact_store_spec(redis)}: " if redis is not None else ""
    if isinstance(error, QueueUnavailable):
        return (
            f"{where}{_one_line(str(error))}: start the worker again once Redis answers "
            "(it resumes what it held), or give it more --redis-patience"
        )
    if isinstance(error, CrawlOutputError):
        again = f"with {restart}" if restart is not None else "without --resume"
        return _one_line(str(error)).replace("without resume", again)
    if isinstance(error, TokenStoreError):
        named = f" (--store {redact_store_spec(store)})" if store is not None else ""
        return f"token store{named}: {_one_line(str(error))}"
    if isinstance(error, WiserError):
        return _one_line(str(error))
    if _redis_error(error):
        return f"{where}{describe_redis_error(error, timeout=redis_timeout)}"
    if isinstance(error, ImportError):
        return missing_extra(error)
    if isinstance(error, OSError):
        return _os_error(error)
    return None


def _together(messages: Sequence[str]) -> str:
    first, others = messages[0], messages[1:]
    if not others:
        return first
    shown = others[: _SHOWN_TOGETHER - 1]
    more = len(others) - len(shown)
    rest = "; ".join(shown) + (f"; and {more} more" if more else "")
    return f"{first} (and at the same time: {rest})"


class CliGroup(click.Group):
    """The root group: every error is one line on stderr, Ctrl-C exits 130 everywhere.

    click would print a usage block for a usage error and turn Ctrl-C into
    "Aborted!" with exit code 1; here a usage error is one ``error:`` line
    (exit 2) and an interruption says what fits the command (exit 130).
    Errors raised together (an exception group) and a missing extra are one
    line with exit code 2 as well.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):
            self._interrupt(ctx)
        except (BaseExceptionGroup, ImportError) as exc:
            if isinstance(exc, BaseExceptionGroup) and _interrupted(exc):
                self._interrupt(ctx)
            message = describe_error(exc)
            if message is None:
                raise
            raise CliError(message) from None

    @staticmethod
    def _interrupt(ctx: click.Context) -> None:
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
def reported(
    *,
    store: str | None = None,
    redis: str | None = None,
    redis_timeout: float | None = None,
    restart: str | None = None,
) -> Iterator[None]:
    """Turn the library's errors into one-line `CliError` messages (exit code 2).

    Errors raised together come as one line; an interruption among them
    stops the command as Ctrl-C does.

    Args:
        store: The ``--store`` spec in use, named in store errors.
        redis: The ``--redis`` URL in use, named in Redis errors (user and password masked).
        redis_timeout: Its connect timeout, named when it ran out.
        restart: The flag that starts an output again (``crawl``'s ``--restart``).
    """
    context: dict[str, Any] = {
        "store": store,
        "redis": redis,
        "redis_timeout": redis_timeout,
        "restart": restart,
    }
    try:
        yield
    except click.ClickException:
        raise
    except BaseExceptionGroup as group:
        if _interrupted(group):
            raise KeyboardInterrupt from None
        message = describe_error(group, **context)
        if message is None:
            raise
        raise CliError(message) from None
    except Exception as exc:  # describe_error says what it knows; the rest is a bug: re-raised
        message = describe_error(exc, **context)
        if message is None:
            raise
        raise CliError(message) from None


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return _one_line(str(exc)) or reason
