"""``wiser-async config show``: the effective configuration, each value with its source."""

from __future__ import annotations

import attrs
import click

from .. import ApiConfig
from ._config_file import ALIASED_MODELS
from ._settings import SETTING_NAMES, Settings, describe, with_settings

__all__ = ["config"]


@click.group()
def config() -> None:
    """The configuration: flags > environment (WISER_*) > file (--config) > defaults."""


@config.command("show")
@with_settings(*SETTING_NAMES)
def config_show(settings: Settings) -> None:
    """Print every setting, its value and where it came from (secrets as ***)."""
    rows = [("setting", "value", "source")]
    for name in SETTING_NAMES:
        rows.append((name, describe(settings, name), str(settings.source(name))))
    rows += _api_rows(settings.api, settings)
    width = [max(len(row[column]) for row in rows) for column in range(2)]
    file = settings.config_file
    click.echo(f"configuration file: {file if file is not None else '(none)'}")
    for setting, value, source in rows:
        click.echo(f"{setting:<{width[0]}}  {value:<{width[1]}}  {source}")


def _api_rows(api: ApiConfig, settings: Settings) -> list[tuple[str, str, str]]:
    rows = []
    for table, current in (("paths", api.paths), ("pages", api.pages)):
        for field in attrs.fields(type(current)):
            name = f"api.{table}.{field.name}"
            rows.append((name, str(getattr(current, field.name)), str(settings.source(name))))
    for model_name, cls in ALIASED_MODELS.items():
        for field_name, wire in sorted(api.aliases.get(cls, {}).items()):
            name = f"api.aliases.{model_name}.{field_name}"
            rows.append((name, wire, str(settings.source(name))))
    return rows
