"""Check that a built documentation site has a reference entry for every public name.

Usage: python .ci/check_docs.py SITE_DIR

Reads SITE_DIR/objects.inv (the Sphinx inventory mkdocstrings writes: four
header lines, then zlib-compressed lines ``NAME DOMAIN:ROLE PRIORITY URI
DISPNAME``) and checks that it names every public name of the packages:
``wiser_async.__all__``, ``token_stores.__all__``, and the ``__all__`` of
``wiser_async.errors``, ``wiser_async.transports``, the integrations
(``wiser_async.integrations`` and its modules), ``wiser_async.sandbox`` and
``wiser_async.testing`` (the test kit: its ``__all__``, or else every public
name it defines, fixtures included). Prints how many entries it checked;
exits 1 naming every name without an entry, 2 if the site has no inventory.
Needs the packages installed with their extras, not mkdocs.
"""

from __future__ import annotations

import importlib
import sys
import types
import zlib
from collections.abc import Iterable
from pathlib import Path

# Modules whose public names must each have a reference entry, as NAME.member.
MODULES = (
    "wiser_async",
    "token_stores",
    "wiser_async.errors",
    "wiser_async.transports",
    "wiser_async.integrations",
    "wiser_async.integrations.fastapi",
    "wiser_async.integrations.aiohttp",
    "wiser_async.integrations.opentelemetry",
    "wiser_async.sandbox",
    "wiser_async.testing",
)
HEADER_LINES = 4
USAGE = "usage: python .ci/check_docs.py SITE_DIR"


def read_inventory(path: Path) -> set[str]:
    """The object names an ``objects.inv`` (Sphinx inventory version 2) lists."""
    data = path.read_bytes()
    parts = data.split(b"\n", HEADER_LINES)
    if len(parts) <= HEADER_LINES or not parts[0].startswith(b"# Sphinx inventory version 2"):
        raise ValueError(f"{path} is not a Sphinx inventory (version 2)")
    names = set()
    for line in zlib.decompress(parts[HEADER_LINES]).decode("utf-8").splitlines():
        name, _, rest = line.partition(" ")
        if rest:
            names.add(name)
    return names


def _defined_here(module: types.ModuleType) -> Iterable[str]:
    """Public names a module without ``__all__`` defines itself (not those it imports)."""
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        # A pytest fixture is a wrapper whose function knows its module.
        origin = getattr(value, "_fixture_function", value)
        if getattr(origin, "__module__", None) == module.__name__:
            yield name


def public_names(module_name: str) -> list[str]:
    """``module_name.NAME`` for every public name of the module."""
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        # A package that only gathers modules (wiser_async.integrations) exports nothing itself.
        exported = [] if hasattr(module, "__path__") else list(_defined_here(module))
    return [f"{module_name}.{name}" for name in exported]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(USAGE, file=sys.stderr)  # noqa: T201
        return 2
    inventory = Path(argv[1]) / "objects.inv"
    if not inventory.is_file():
        print(f"{inventory} not found: build the site first (mkdocs build)", file=sys.stderr)  # noqa: T201
        return 2
    entries = read_inventory(inventory)
    expected = [name for module in MODULES for name in public_names(module)]
    missing = [name for name in expected if name not in entries]
    if missing:
        print(  # noqa: T201
            f"{len(missing)} of {len(expected)} public names have no API reference entry "
            f"in {inventory}:\n  " + "\n  ".join(missing),
            file=sys.stderr,
        )
        return 1
    print(  # noqa: T201
        f"API reference: all {len(expected)} public names have an entry "
        f"({len(entries)} entries in {inventory})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
