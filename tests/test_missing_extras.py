"""A library module whose optional extra is missing says which extra to install.

Each case runs in a fresh interpreter with the extra's module hidden (as if
it were not installed) and checks the error names ``pip install
'wiser-async[EXTRA]'`` instead of a bare ``No module named ...``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
sys.modules[sys.argv[1]] = None  # as if not installed: importing it fails
try:
    exec(sys.argv[2])
except ModuleNotFoundError as error:
    print(error)
else:
    print("no error")
"""


@pytest.mark.parametrize(
    ("hidden", "statement", "extra"),
    [
        ("fastapi", "import wiser_async.integrations.fastapi", "fastapi"),
        ("aiohttp", "import wiser_async.integrations.aiohttp", "aiohttp"),
        ("aiohttp", "from wiser_async.transports import AiohttpTransport", "aiohttp"),
        ("opentelemetry", "import wiser_async.integrations.opentelemetry", "otel"),
        ("redis", "from token_stores import RedisTokenStore; RedisTokenStore('redis://x')",
         "redis"),
        ("redis", "from wiser_async import RedisRateLimiter; RedisRateLimiter('redis://x', "
         "key='k', rate=1.0)", "redis"),
        ("redis", "from wiser_async.integrations.fastapi import RedisPendingStore; "
         "RedisPendingStore('redis://x')", "redis"),
        ("cryptography", "from token_stores import Encryption; Encryption(['k'])", "encryption"),
        ("uvicorn", "from wiser_async.sandbox import Sandbox, serve; serve(Sandbox())", "sandbox"),
    ],
)  # fmt: skip
def test_a_missing_extra_names_the_pip_install_that_brings_it(
    hidden: str, statement: str, extra: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, hidden, statement],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = completed.stdout.strip()
    assert f"pip install 'wiser-async[{extra}]'" in line, line
