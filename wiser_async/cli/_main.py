"""The ``wiser-async`` root group and its commands (the package's `main`, with click there)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Final

import click

from ._environment import known_variables, unknown_variable_warnings
from ._errors import CliGroup, warn

__all__ = ["main"]

# Command name -> (module, its command), imported when the command is named:
# a worker (`queue worker`) loads neither the crawl's progress bars nor the
# sandbox, the browser login or their dependencies. The modules are not
# shadowed by their commands: wiser_async.cli.crawl stays the module.
COMMANDS: Final = {
    "config": ("config", "config"),
    "crawl": ("crawl", "crawl"),
    "demo": ("demo", "demo"),
    "diff": ("diff", "diff"),
    "export": ("export", "export"),
    "login": ("login", "login"),
    "queue": ("distributed", "queue"),
    "sandbox": ("sandbox", "sandbox_command"),
    "tokens": ("tokens", "tokens"),
}


class LazyGroup(CliGroup):
    """The root group, importing each command's module when the command is first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module_name, attribute = COMMANDS[cmd_name]
            module = importlib.import_module(f".{module_name}", __package__)
            command: click.Command = getattr(module, attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def load_all(self) -> None:
        """Import every command (to read all their options)."""
        for name in COMMANDS:
            self.get_command(click.Context(self), name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="wiser-async")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Client of the Wiser Energy Monitoring Cloud API.

    Every option can also be set by an environment variable (shown in each
    command's --help) and the deployment settings by a TOML file (--config);
    a flag wins over the environment, which wins over the file. Exit codes:
    0 done, 1 an incomplete result (a crawl with parts missing, differences
    in a diff), 2 a usage, configuration or output error, 130 interrupted.
    A WISER_* variable no command reads is warned about (its name only).
    """
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose < 2:
        # stamina logs every retry at warning level: in a crawl that is noise
        # unless asked for.
        logging.getLogger("stamina").setLevel(logging.ERROR)
    # The command being run is loaded already; the others only when a WISER_*
    # variable is not one of its settings (it may be another command's).
    if unknown_variable_warnings(os.environ, known_variables(main)):
        main.load_all()
        for line in unknown_variable_warnings(os.environ, known_variables(main)):
            warn(line)
