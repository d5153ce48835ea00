"""Checks what the wheel and the sdist built into a directory carry.

Usage: python .ci/check_dist.py DIST_DIR

The wheel: both packages with their ``py.typed``, the license, the console
script and the test kit's pytest entry point, and no tests, benchmarks or
examples. The sdist: the packages, the tests, the examples, the docs, the
license and the changelog. Exits 1 naming every missing or unexpected file.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_NEEDS = (
    "wiser_async/__init__.py",
    "wiser_async/py.typed",
    "wiser_async/testing.py",
    "token_stores/__init__.py",
    "token_stores/py.typed",
)
WHEEL_REFUSES = ("tests/", "benchmarks/", "examples/", "docs/")
SDIST_NEEDS = (
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "mkdocs.yml",
    "wiser_async/py.typed",
    "token_stores/py.typed",
    "examples/fastapi_app.py",
    "examples/aiohttp_app.py",
    "tests/conftest.py",
    "docs/index.md",
)


def check_wheel(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
        entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        entries = wheel.read(entry_points).decode()
        problems = [f"wheel: {need} missing" for need in WHEEL_NEEDS if need not in names]
        problems += [
            f"wheel: {name} should not be there" for name in names if name.startswith(WHEEL_REFUSES)
        ]
        if not any(name.endswith("licenses/LICENSE") for name in names):
            problems.append("wheel: LICENSE missing from .dist-info/licenses")
        if "License-Expression: MIT" not in wheel.read(metadata).decode():
            problems.append("wheel: METADATA lacks License-Expression: MIT")
    if "wiser-async = wiser_async.cli:main" not in entries:
        problems.append("wheel: the wiser-async console script is missing")
    if "wiser_async = wiser_async.testing" not in entries:
        problems.append("wheel: the pytest11 entry point of the test kit is missing")
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        top, names = "", set()
        for member in sdist.getnames():
            top, _, rest = member.partition("/")
            names.add(rest)
    return [f"sdist ({top}): {need} missing" for need in SDIST_NEEDS if need not in names]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(directory: str) -> int:
    dist = Path(directory)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        say(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        say(problem)
    if not problems:
        say(f"{wheels[0].name} and {sdists[0].name}: contents as expected")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
