"""Tool calls and multimodal messages in each provider's own form.

Requests carry messages in the neutral form (`Message.to_dict`: OpenAI's chat messages);
`openai_messages` and `ollama_messages` give each SDK what its API takes. Answers' tool calls
become `ToolCall`s; OpenAI's streamed pieces are put together by `OpenAICallPieces`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

from llmclient.clients.params import SamplingParams
from llmclient.errors import ConfigurationError, MalformedResponseError, UnsupportedFeatureError
from llmclient.types import ToolCall

__all__ = [
    "OpenAICallPieces",
    "check_ollama_messages",
    "check_ollama_tool_choice",
    "ollama_messages",
    "ollama_tool_calls",
    "ollama_tools",
    "openai_messages",
    "openai_tool_call",
    "openai_tool_choice",
    "openai_tools",
]

_CHOICES = ("auto", "none", "required")


# ---------------------------------------------------------------------------------- OpenAI
def openai_tools(params: SamplingParams) -> list[dict[str, Any]]:
    """`tools=[{"type": "function", "function": {...}}]`."""
    return [tool.to_dict() for tool in params.tool_specs]


def openai_tool_choice(choice: str) -> str | dict[str, Any]:
    """`"auto"`, `"none"`, `"required"`, or the named function's object."""
    if choice in _CHOICES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages without the tool turns' `name`, which OpenAI's API does not take."""
    if not any(m["role"] == "tool" and "name" in m for m in messages):
        return messages
    return [
        {k: v for k, v in m.items() if k != "name"} if m["role"] == "tool" else m for m in messages
    ]


def _arguments(name: str, text: str | None, provider: str) -> Any:
    """A call's arguments, sent as a JSON string, parsed."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError as error:
        shown = text if len(text) <= 200 else text[:200] + "..."
        raise MalformedResponseError(
            f"the arguments of tool call {name!r} are not JSON ({error}): {shown!r}",
            provider=provider,
        ) from None


def openai_tool_call(call: Any, provider: str) -> ToolCall:
    """A `ToolCall` from the SDK's `ChatCompletionMessageToolCall`."""
    function = call.function
    return ToolCall(
        name=function.name,
        arguments=_arguments(function.name, function.arguments, provider),
        id=call.id,
    )


class OpenAICallPieces:
    """Tool calls of a stream, put together from their deltas (by `index`)."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def add(self, deltas: Iterable[Any]) -> None:
        """Fold one chunk's `delta.tool_calls` in."""
        for delta in deltas:
            parts = self._calls.setdefault(delta.index, ["", "", ""])
            if delta.id:
                parts[0] = delta.id
            function = delta.function
            if function is not None:
                if function.name:
                    parts[1] += function.name
                if function.arguments:
                    parts[2] += function.arguments

    def calls(self, provider: str) -> tuple[ToolCall, ...]:
        """The assembled calls, in index order."""
        out = []
        for index in sorted(self._calls):
            call_id, name, arguments = self._calls[index]
            if not name:
                raise MalformedResponseError(
                    f"streamed tool call {index} has no function name", provider=provider
                )
            out.append(ToolCall(name, _arguments(name, arguments, provider), call_id or None))
        return tuple(out)


# ---------------------------------------------------------------------------------- Ollama
def check_ollama_tool_choice(params: SamplingParams, provider: str) -> None:
    """Ollama's API has no tool_choice: only `"auto"` (its behaviour) and `"none"` (no tools
    sent) can be honoured."""
    choice = params.tool_choice
    if choice is not None and choice not in ("auto", "none"):
        raise UnsupportedFeatureError(
            f"tool_choice={choice!r}: Ollama's /api/chat cannot force a tool call; use "
            '"auto" or "none", or an OpenAI-compatible server',
            provider=provider,
        )


def ollama_tools(params: SamplingParams) -> list[dict[str, Any]] | None:
    """Ollama's `tools` (the same function form), None when none are to be offered."""
    if not params.tools or params.tool_choice == "none":
        return None
    return [tool.to_dict() for tool in params.tool_specs]


def _ollama_image(url: str) -> str:
    """An image URL as Ollama takes it: the base64 of a `data:` URL."""
    if not url.startswith("data:"):
        raise ConfigurationError(
            f"invalid argument: image url={url[:80]!r}: Ollama takes images as bytes or "
            "base64 only, not URLs; pass llmclient.image(data_bytes) or a local file path"
        )
    header, _, data = url.partition(",")
    if not header.endswith(";base64"):
        raise ConfigurationError(
            f"invalid argument: image url={url[:80]!r}: a data: URL for Ollama must be base64"
        )
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ConfigurationError(
            f"invalid argument: image url={url[:80]!r}: its data is not valid base64"
        ) from None
    return data


def check_ollama_messages(messages: list[dict[str, Any]]) -> None:
    """Refuse what Ollama cannot take (image URLs) before anything is sent."""
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            for part in content:
                if part.get("type") == "image_url":
                    _ollama_image(part["image_url"]["url"])


def _ollama_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, str):
        out: dict[str, Any] = {"role": message["role"], "content": content}
    else:
        texts = [p["text"] for p in content if p.get("type") == "text"]
        images = [_ollama_image(p["image_url"]["url"]) for p in content if p.get("type") != "text"]
        out = {"role": message["role"], "content": "\n".join(texts)}
        if images:
            out["images"] = images
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            {"function": {"name": c["function"]["name"], "arguments": _ollama_args(c)}}
            for c in calls
        ]
    if message["role"] == "tool" and message.get("name"):
        out["tool_name"] = message["name"]
    return out


def _ollama_args(call: Mapping[str, Any]) -> Any:
    arguments = call["function"]["arguments"]
    return json.loads(arguments) if isinstance(arguments, str) else arguments


def ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages in `/api/chat`'s form: images as base64 beside the text, tool calls with
    their arguments as objects, tool turns named by `tool_name`."""
    if all(len(m) == 2 and isinstance(m["content"], str) for m in messages):
        return messages  # plain text turns: already Ollama's form
    return [_ollama_message(m) for m in messages]


def ollama_tool_calls(calls: Iterable[Any] | None) -> tuple[ToolCall, ...]:
    """`ToolCall`s from the SDK's `Message.ToolCall`s (whole calls, arguments an object)."""
    return tuple(
        ToolCall(name=c.function.name, arguments=dict(c.function.arguments)) for c in calls or ()
    )
