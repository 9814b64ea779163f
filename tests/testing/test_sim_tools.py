"""The simulator's schema-conforming answers (`llmclient.testing._tools.instance`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from llmclient.testing._tools import instance


class Address(BaseModel):
    city: str
    zip_code: int


class Person(BaseModel):
    name: str
    nickname: str | None = None
    kind: Literal["a", "b"]
    home: Address
    past: list[Address]
    score: float


def test_an_instance_of_a_nested_pydantic_schema_validates() -> None:
    value = instance(Person.model_json_schema(), "hint")
    person = Person.model_validate(value)
    assert person.home == Address(city="hint", zip_code=1)
    assert person.kind == "a" and person.nickname == "hint" and len(person.past) == 1


def test_bounds_and_lengths_are_kept() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 5, "maximum": 9},
            "m": {"type": "number", "exclusiveMinimum": 2},
            "s": {"type": "string", "maxLength": 3},
            "xs": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
            "c": {"const": 7},
            "t": {"type": ["null", "string"]},
        },
    }
    assert instance(schema, "abcdef") == {
        "n": 5,
        "m": 3.0,
        "s": "abc",
        "xs": [True, True],
        "c": 7,
        "t": "abcdef",
    }
