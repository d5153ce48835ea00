"""Names of a package imported from their modules when first asked for (PEP 562)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names imported on first use.

    Args:
        package: The package's ``__name__``.
        homes: Each name -> the module (relative to `package`) that defines it.
        public: The package's ``__all__``.
    """
    listed = set(public)

    def get(name: str) -> Any:
        module_name = homes.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(module_name, package)
        # Every name of that module at once: importing it bound its own name
        # in the package (``merge`` the module), which the name must replace.
        names = vars(sys.modules[package])
        for other, home in homes.items():
            if home == module_name:
                names[other] = getattr(module, other)
        return names[name]

    def listing() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | listed)

    return get, listing
