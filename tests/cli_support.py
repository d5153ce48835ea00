"""Helpers for tests of the `wiser-async` command line."""

from __future__ import annotations

from click.testing import Result

__all__ = ["assert_one_line_error"]


def assert_one_line_error(result: Result, *fragments: str, code: int = 2) -> str:
    """The command failed with `code` and one ``error: ...`` line holding each fragment."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]
