"""The ``wiser-async`` command line (needs the ``cli`` extra).

::

    wiser-async demo                 the sandbox, the OAuth flow, a crawl and a summary
    wiser-async crawl -o OUT.jsonl   crawl portfolios to JSONL (resumable) or JSON
    wiser-async diff OLD NEW         devices added, removed and changed between two crawls
    wiser-async export OUT --to URL  a crawl output into SQLite or PostgreSQL tables
    wiser-async login -a ACCOUNT     authorize a customer in a browser, store the token
    wiser-async tokens list|show|delete --store SPEC
    wiser-async sandbox              serve the emulator on a loopback port
    wiser-async config show          the effective configuration and where each value came from
    wiser-async queue enqueue|worker|merge   a crawl spread over worker processes (Redis)

One module per command, gathered by `_main`; `_settings` (flag > environment
> file > default), `_config_file` (the TOML file), `_stores`, `_clients`,
`_progress`, `_sandboxes`, `_summary`, `_environment` (unknown ``WISER_*``
variables), `_extras` (which extra installs a missing module) and `_errors`
(one-line errors, exit codes, Ctrl-C) are shared.

Without click or rich (a plain ``pip install wiser-async``), `main` is a
stand-in that says which extra to install, in one line, with exit code 2.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ._extras import CLI_MODULES, install_command

__all__ = ["main"]


def _stand_in(missing: str) -> Callable[..., NoReturn]:
    message = (
        f"error: the wiser-async command needs {missing} (the cli extra): "
        f"{install_command('cli')}\n"
    )

    def main(*_args: object, **_options: object) -> NoReturn:
        """The command line without the cli extra: one line naming it, exit code 2."""
        sys.stderr.write(message)
        raise SystemExit(2)

    return main


def _missing_cli_module() -> str | None:
    # Found, not imported: rich is imported by the commands that draw with it only.
    for module in CLI_MODULES:
        if importlib.util.find_spec(module) is None:
            return module
    return None


if TYPE_CHECKING:
    from ._main import main
elif (_missing := _missing_cli_module()) is not None:
    main = _stand_in(_missing)
else:
    from ._main import main
