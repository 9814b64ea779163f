"""Structured output: `response_format=` (a JSON schema or a pydantic model class) checked,
sent in each provider's form, and the answer validated into `Completion.parsed`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from llmclient.errors import MalformedResponseError
from llmclient.types import Completion

if TYPE_CHECKING:
    from llmclient.clients.params import SamplingParams

__all__ = ["check_format", "ollama_format", "openai_format", "with_parsed"]

ResponseFormat = dict[str, Any] | type[BaseModel]
_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def check_format(value: object) -> object:
    """`value` if it can be a `response_format`, else a ValueError saying what it must be."""
    if value is None or (isinstance(value, type) and issubclass(value, BaseModel)):
        return value
    if isinstance(value, Mapping):
        if value.get("type") == "json_object":
            raise ValueError("for any JSON object pass json_mode=True; response_format is a schema")
        wrapped = value.get("json_schema") if value.get("type") == "json_schema" else None
        if value.get("type") == "json_schema" and not (
            isinstance(wrapped, Mapping) and isinstance(wrapped.get("schema"), Mapping)
        ):
            raise ValueError('{"type": "json_schema", ...} needs "json_schema": {"schema": {...}}')
        return dict(value)
    raise ValueError(
        f"must be a JSON schema (a dict) or a pydantic model class, got {type(value).__name__}"
    )


def _parts(fmt: ResponseFormat) -> tuple[str, dict[str, Any], bool | None]:
    """The schema's name, the schema, and OpenAI's `strict` (None: not given)."""
    if isinstance(fmt, type):
        return fmt.__name__, fmt.model_json_schema(), None
    if fmt.get("type") == "json_schema":  # OpenAI's own wrapper, passed through
        inner = fmt["json_schema"]
        name = inner.get("name") or inner["schema"].get("title") or "response"
        return str(name), dict(inner["schema"]), inner.get("strict")
    title = fmt.get("title")
    return str(title) if isinstance(title, str) else "response", fmt, None


def openai_format(fmt: ResponseFormat) -> dict[str, Any]:
    """OpenAI's `response_format={"type": "json_schema", "json_schema": {...}}`."""
    name, schema, strict = _parts(fmt)
    spec: dict[str, Any] = {"name": _NAME.sub("_", name)[:64] or "response", "schema": schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def ollama_format(fmt: ResponseFormat) -> dict[str, Any]:
    """Ollama's top-level `format`: the schema itself."""
    return _parts(fmt)[1]


def parse(fmt: ResponseFormat, text: str, provider: str) -> Any:
    """`text` as the model instance or the JSON value `fmt` asks for."""
    try:
        if isinstance(fmt, type):
            return fmt.model_validate_json(text)
        return json.loads(text)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(the whole answer)'}: {e['msg']}"
            for e in error.errors()[:5]
        )
        raise MalformedResponseError(
            f"the answer does not match response_format {_parts(fmt)[0]!r}: {problems} "
            f"(answer: {_clip(text)!r})",
            provider=provider,
        ) from None
    except ValueError as error:
        raise MalformedResponseError(
            f"the answer to response_format {_parts(fmt)[0]!r} is not JSON ({error}; "
            f"answer: {_clip(text)!r})",
            provider=provider,
        ) from None


def with_parsed(completion: Completion, params: SamplingParams, provider: str) -> Completion:
    """`completion` with `parsed` set when a `response_format` was asked (else unchanged).

    A reply that fails validation raises `MalformedResponseError`, so it is retried as a
    fault. A reply that only asks for tool calls has no text to validate.
    """
    fmt = params.response_format
    if fmt is None or (completion.tool_calls and not completion.text):
        return completion
    return replace(completion, parsed=parse(fmt, completion.text, provider))


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
