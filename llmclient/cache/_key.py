"""Cache keys: SHA-256 over canonical JSON of what identifies one answer.

The parts are the cache version, the kind of call (`chat`, `stream`, `embed`), the endpoint
(provider and public base URL: never a credential), the model, the body the provider is sent
and a sample index. Canonical JSON sorts keys and drops whitespace, so the same request gives
the same key in any process and any run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import to_jsonable_python

__all__ = ["CACHE_VERSION", "canonical", "digest", "is_deterministic"]

CACHE_VERSION = 1  # part of every key: a change of the stored format bumps it

_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=to_jsonable_python
).encode


def canonical(value: object) -> str:
    """`value` as canonical JSON (sorted keys, no spaces); models and dataclasses as their
    fields.

    >>> canonical({"b": 1, "a": [1.5, None]})
    '{"a":[1.5,null],"b":1}'
    """
    return _encode(value)


def digest(text: str) -> str:
    """The hex SHA-256 of `text` (UTF-8): a key of a cache store."""
    return hashlib.sha256(text.encode()).hexdigest()


def is_deterministic(temperature: float | None, seed: int | None, extra: Mapping[str, Any]) -> bool:
    """Whether a call's answer is meant to repeat: temperature 0 or a seed, given as a
    parameter or in the provider's own options. An omitted temperature is the server's
    default, which is not 0.

    >>> is_deterministic(None, None, {}), is_deterministic(0.0, None, {})
    (False, True)
    """
    if temperature == 0 or seed is not None:
        return True
    return extra.get("temperature") == 0 or extra.get("seed") is not None
