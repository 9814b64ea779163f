"""What a cache entry holds: a completion, a stream's deltas, or a vector, as compact JSON."""

from __future__ import annotations

import json
from typing import Any

from llmclient.types import Completion, StreamEnd, Token, ToolCall, Usage

__all__ = [
    "decode_completion",
    "decode_stream",
    "decode_vector",
    "encode_completion",
    "encode_stream",
    "encode_vector",
]


def _usage(usage: Usage | None) -> list[int] | None:
    return None if usage is None else [usage.prompt_tokens, usage.completion_tokens]


def _from_usage(value: Any) -> Usage | None:
    return None if value is None else Usage(int(value[0]), int(value[1]))


def _token(token: Token) -> list[Any]:
    return [token.text, token.prob, [_token(t) for t in token.top_candidates]]


def _from_token(value: Any) -> Token:
    return Token(value[0], value[1], [_from_token(t) for t in value[2]])


def _calls(calls: tuple[ToolCall, ...]) -> list[list[Any]] | None:
    return [[c.name, c.arguments, c.id] for c in calls] if calls else None


def _from_calls(value: Any) -> tuple[ToolCall, ...]:
    return () if not value else tuple(ToolCall(c[0], c[1], c[2]) for c in value)


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_completion(completion: Completion) -> bytes:
    """The completion's answer, finish reason, usage, tokens, model, reasoning and tool calls.

    `parsed` is not kept: it is validated again from the text on a hit."""
    c = completion
    return _dumps(
        {
            "text": c.text,
            "finish": c.finish_reason,
            "usage": _usage(c.usage),
            "tokens": None if c.tokens is None else [_token(t) for t in c.tokens],
            "model": c.model,
            "reasoning": c.reasoning,
            "tools": _calls(c.tool_calls),
        }
    )


def decode_completion(data: bytes, latency: float = 0.0) -> Completion:
    """The stored completion (`attempts` 0: no request was sent for it)."""
    v = json.loads(data)
    tokens = v["tokens"]
    return Completion(
        text=v["text"],
        finish_reason=v["finish"],
        usage=_from_usage(v["usage"]),
        tokens=None if tokens is None else [_from_token(t) for t in tokens],
        model=v["model"],
        attempts=0,
        latency=latency,
        reasoning=v["reasoning"],
        tool_calls=_from_calls(v.get("tools")),
    )


def encode_stream(deltas: list[str], end: StreamEnd) -> bytes:
    """A stream's text deltas as they came, and what its end reported."""
    return _dumps(
        {
            "deltas": deltas,
            "finish": end.finish_reason,
            "usage": _usage(end.usage),
            "tools": _calls(end.tool_calls),
        }
    )


def decode_stream(data: bytes) -> tuple[list[str], StreamEnd]:
    """The stored deltas and end of a stream."""
    v = json.loads(data)
    end = StreamEnd(v["finish"], _from_usage(v["usage"]), _from_calls(v.get("tools")))
    return list(v["deltas"]), end


def encode_vector(vector: list[float]) -> bytes:
    """One embedding."""
    return json.dumps(vector, separators=(",", ":")).encode()


def decode_vector(data: bytes) -> list[float]:
    """A stored embedding."""
    vector: list[float] = json.loads(data)
    return vector
