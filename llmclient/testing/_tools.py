"""Tool calls and structured answers of the simulated server, in each protocol's form.

Deterministic rules, so tests and docs need no setup: a chat request offering `tools` (and a
`tool_choice` other than "none") is answered with a call to the chosen tool (the named one, else
the first), its arguments made from the tool's parameter schema; a request whose last turn is a
tool result is answered by text that quotes it; a request with a JSON schema
(OpenAI `response_format={"type": "json_schema", ...}`, Ollama `format={...}`) is answered with
JSON conforming to the schema. `Script` overrides all of that for the next answers
(`SimulatedServer.reply_with`), e.g. to send a reply that fails validation.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from . import _protocols as proto

__all__ = ["Call", "Script", "Scripted", "instance", "shape"]

_ARGUMENT_PIECE = 7  # characters of arguments per streamed OpenAI tool-call delta


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call the server answers with; `arguments` a JSON value, or a string sent as
    the arguments' text as is (OpenAI; to send arguments that are not JSON)."""

    name: str
    arguments: Any
    id: str


@dataclass(frozen=True, slots=True)
class Scripted:
    """A scripted answer: its text (None: the usual one) and tool calls."""

    content: str | None
    tool_calls: tuple[tuple[str, Any], ...]


class Script:
    """The scripted answers still to give, in order."""

    def __init__(self) -> None:
        self._next: deque[Scripted] = deque()

    def add(self, answer: Scripted, count: int) -> None:
        self._next.extend(answer for _ in range(count))

    def take(self) -> Scripted | None:
        return self._next.popleft() if self._next else None


def instance(schema: Any, hint: str, root: Any = None, depth: int = 0) -> Any:
    """A JSON value that conforms to `schema` (the common keywords), its strings `hint`."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 12:
        return hint
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return instance(target, hint, root, depth + 1)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if o.get("type") != "null"), options[0])
            return instance(chosen, hint, root, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        return instance(schema["allOf"][0], hint, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: instance(sub, hint, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [instance(schema.get("items") or {}, hint, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low: Any = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        low = low if isinstance(low, int | float) else 0
        value = max(1, low + (1 if "exclusiveMinimum" in schema else 0))
        high = schema.get("maximum")
        value = min(value, high) if isinstance(high, int | float) else value
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    limit = schema.get("maxLength")
    text = hint or "text"
    return text[:limit] if isinstance(limit, int) else text


def _schema(body: dict[str, Any], openai: bool) -> Any:
    if openai:
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            inner = fmt.get("json_schema")
            return inner.get("schema") if isinstance(inner, dict) else None
        return None
    fmt = body.get("format")
    return fmt if isinstance(fmt, dict) else None


def _chosen_tool(body: dict[str, Any], openai: bool) -> dict[str, Any] | None:
    functions = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
    tools: list[dict[str, Any]] = [
        f for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)
    ]
    choice = body.get("tool_choice") if openai else None
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t["name"] == name), None)
    return tools[0]


def shape(
    gen: proto.Generation,
    body: dict[str, Any],
    *,
    openai: bool,
    scripted: Scripted | None,
    call_id: str,
) -> tuple[proto.Generation, list[Call]]:
    """The generation with this request's text, and the tool calls to answer with."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    hint = gen.text.removeprefix(proto.THINKING).removeprefix(proto.REPLY_PREFIX)
    text: str | None = None
    calls: list[Call] = []
    if scripted is not None:
        calls = [
            Call(name, arguments, f"{call_id}_{i}")
            for i, (name, arguments) in enumerate(scripted.tool_calls)
        ]
        text = scripted.content if scripted.content is not None or not calls else ""
    elif last.get("role") == "tool":
        text = proto.REPLY_PREFIX + proto._content_text(last.get("content"))
    elif (tool := _chosen_tool(body, openai)) is not None:
        calls = [Call(tool["name"], instance(tool.get("parameters") or {}, hint), f"{call_id}_0")]
        text = ""
    elif (schema := _schema(body, openai)) is not None:
        text = json.dumps(instance(schema, hint))
    if text is None and not calls:
        return gen, []
    tokens = proto.tokenize(text) if text is not None else gen.tokens
    finish = "tool_calls" if calls and openai else "stop"
    return replace(gen, tokens=tokens, finish_reason=finish), calls


def _argument_text(call: Call) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def openai_message_calls(payload: dict[str, Any], calls: list[Call]) -> dict[str, Any]:
    """A `chat.completion` whose message asks for `calls` (content null when it has none)."""
    message = payload["choices"][0]["message"]
    message["tool_calls"] = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": _argument_text(call)},
        }
        for call in calls
    ]
    if not message["content"]:
        message["content"] = None
    return payload


def openai_call_deltas(calls: list[Call]) -> list[dict[str, Any]]:
    """The `delta`s that stream `calls` as OpenAI does: per call (by `index`) one with its id,
    type and name, then the arguments' text in pieces."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head = {"name": call.name, "arguments": ""}
        first = {"index": index, "id": call.id, "type": "function", "function": head}
        deltas.append({"tool_calls": [first]})
        text = _argument_text(call)
        for start in range(0, len(text), _ARGUMENT_PIECE):
            piece = {"arguments": text[start : start + _ARGUMENT_PIECE]}
            deltas.append({"tool_calls": [{"index": index, "function": piece}]})
    return deltas


def ollama_calls(calls: list[Call]) -> list[dict[str, Any]]:
    """Ollama's `message.tool_calls`: whole calls, arguments as an object, no id."""
    return [{"function": {"name": call.name, "arguments": call.arguments}} for call in calls]
