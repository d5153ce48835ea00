"""The README's ```python examples run as they are (```py blocks are excerpts)."""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_readme_has_runnable_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(
    index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    if "RedisTokenStore(" in BLOCKS[index] or "RedisRateLimiter(" in BLOCKS[index]:
        request.getfixturevalue("redis_url")  # Redis examples need a Redis
    script = tmp_path / f"example_{index}.py"
    script.write_text(BLOCKS[index])
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out  # each example prints what it shows


TOML_BLOCKS = re.findall(r"^```toml\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_readme_configuration_file_is_accepted_by_config_show(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from wiser_async.cli import main

    (tmp_path / "secret.txt").write_text("not-a-real-secret\n")
    config = tmp_path / "wiser.toml"
    config.write_text(TOML_BLOCKS[index])
    for name in [name for name in os.environ if name.startswith("WISER_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "not-a-real-secret" not in result.output
    assert "/sites/{site_id}/equipment" in result.output
