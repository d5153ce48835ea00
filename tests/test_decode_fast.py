"""The compiled decoders: objects built slot by slot only where `__init__` would do no more."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from wiser_async._decode.compiled import compile_structure


@attrs.define(kw_only=True)
class Plain:
    id: str
    name: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


def _positive(_: Any, __: Any, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError("negative")


@attrs.define(kw_only=True)
class Validated:
    id: str
    count: int | None = attrs.field(default=None, validator=_positive)
    extra: dict[str, Any] = attrs.field(factory=dict)


SEEN: list[str] = []


@attrs.define(kw_only=True)
class Hooked:
    id: str
    extra: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        SEEN.append(self.id)


def decoder(cls: type) -> Any:
    names = {field.name: field.name for field in attrs.fields(cls) if field.name != "extra"}
    return compile_structure(cls, names, {})


def test_a_plain_model_decodes_to_what_its_constructor_builds() -> None:
    decoded = decoder(Plain)({"id": "a", "name": "n", "more": 1}, Plain)
    assert decoded == Plain(id="a", name="n", extra={"more": 1})
    assert decoder(Plain)({"id": "b"}, Plain) == Plain(id="b")


def test_a_validator_still_runs() -> None:
    structure = decoder(Validated)
    assert structure({"id": "a", "count": 3}, Validated) == Validated(id="a", count=3)
    with pytest.raises(ValueError, match="negative"):
        structure({"id": "a", "count": -1}, Validated)


def test_a_post_init_hook_still_runs() -> None:
    SEEN.clear()
    decoder(Hooked)({"id": "a"}, Hooked)
    assert SEEN == ["a"]
