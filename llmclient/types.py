"""Value types that cross the public API: messages, completions, tokens, usage and stats.

Plain frozen dataclasses: they are built once per request, so they stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self, TypeAlias

from llmclient._aclose import AsyncClosing

__all__ = [
    "Completion",
    "Message",
    "MessageInput",
    "Role",
    "Stats",
    "TextStream",
    "Token",
    "Usage",
]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
_ROLES = frozenset(("system", "user", "assistant", "tool"))


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Message role={self.role!r}: must be one of {sorted(_ROLES)}")
        if not isinstance(self.content, str):
            raise TypeError(f"Message content must be a string, got {type(self.content).__name__}")

    @classmethod
    def coerce(cls, value: Message | Mapping[str, object]) -> Message:
        """Accept a `Message` or a `{"role": ..., "content": ...}` mapping."""
        if isinstance(value, Message):
            return value
        if isinstance(value, Mapping) and "role" in value and "content" in value:
            return cls(role=value["role"], content=value["content"])  # type: ignore[arg-type]
        raise TypeError(
            f"messages: each item must be a Message or a mapping with 'role' and 'content', "
            f"got {value!r}"
        )

    def to_dict(self) -> dict[str, str]:
        """The wire form both providers accept."""
        return {"role": self.role, "content": self.content}


MessageInput: TypeAlias = Message | Mapping[str, object]


@dataclass(slots=True)
class Token:
    """A generated token with its probability and the provider's top alternatives."""

    text: str
    prob: float
    top_candidates: list[Token] = field(default_factory=list)

    @property
    def logprob(self) -> float:
        """Natural log of `prob`."""
        return math.log(self.prob) if self.prob > 0 else -math.inf


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the provider."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """The result of one `generate` call, after any retries."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    tokens: list[Token] | None = None
    model: str | None = None
    attempts: int = 1
    latency: float = 0.0  # seconds from the call to its result, waits and retries included


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of one client's activity.

    `rate_limited` counts attempts answered 429 or 503 (server busy). Latency
    percentiles are in seconds over the most recent successful attempts (time on the wire);
    `wait_p50`/`wait_p95` are the time requests spent waiting for a slot.
    """

    in_flight: int
    waiting: int
    completed: int
    failed: int
    retries: int
    rate_limited: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    wait_p50: float | None
    wait_p95: float | None
    concurrency_limit: int

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain dict, for logging or JSON."""
        return {name: getattr(self, name) for name in self.__slots__}


class TextStream(AsyncIterator[str], AsyncClosing):
    """Text deltas of one streamed completion; holds its slot until exhausted or closed.

    Iterate it with `async for`, or use `async with client.stream(...) as deltas:` to be sure
    the slot is released when leaving early.
    """

    __slots__ = ("_deltas",)

    def __init__(self, deltas: AsyncIterator[str]) -> None:
        self._deltas = deltas

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        return await anext(self._deltas)

    async def aclose(self) -> None:
        """Stop the stream and release its slot."""
        close = getattr(self._deltas, "aclose", None)
        if close is not None:
            await close()


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when empty."""
    if not sorted_values:
        return None
    rank = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[rank]
