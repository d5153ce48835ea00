"""The ``wiser-async`` root group and its commands (the package's `main`, with click there)."""

from __future__ import annotations

import logging
import os
import sys

import click

# The modules, not their commands: wiser_async.cli.crawl stays the module.
from . import config, crawl, demo, diff, distributed, login, sandbox, tokens
from ._environment import known_variables, unknown_variable_warnings
from ._errors import CliGroup, warn

__all__ = ["main"]


@click.group(cls=CliGroup)
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
    for line in unknown_variable_warnings(os.environ, known_variables(main)):
        warn(line)


for _command in (
    demo.demo,
    crawl.crawl,
    diff.diff,
    login.login,
    tokens.tokens,
    sandbox.sandbox_command,
    config.config,
    distributed.queue,
):
    main.add_command(_command)
