"""Value types that cross the public API: messages, completions, tokens, usage and stats.

Plain frozen dataclasses: they are built once per request, so they stay cheap. The message
types (`Message`, its parts, `Tool`, `ToolCall`) are defined in `llmclient._messages` and
importable from here.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Self

from llmclient._aclose import AsyncClosing
from llmclient._messages import (
    ContentPart,
    ImagePart,
    Message,
    MessageInput,
    Role,
    TextPart,
    Tool,
    ToolCall,
    image,
    text,
)

__all__ = [
    "Completion",
    "ContentPart",
    "ImagePart",
    "Message",
    "MessageInput",
    "Role",
    "Stats",
    "StreamEnd",
    "TextPart",
    "TextStream",
    "Token",
    "Tool",
    "ToolCall",
    "Usage",
    "image",
    "split_reasoning",
    "text",
]


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

    @property
    def ppl(self) -> float:
        """The token's perplexity, `exp(-logprob)` (GraphGen's `Token.ppl`)."""
        return 1 / self.prob if self.prob > 0 else math.inf


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
    reasoning: str | None = None  # a reasoning model's thinking, kept out of `text`
    tool_calls: tuple[ToolCall, ...] = ()  # the calls the model asks for (`tools=`)
    parsed: Any = None  # `text` validated against `response_format=` (a model, or JSON)

    @property
    def message(self) -> Message:
        """This answer as the assistant turn to append to a conversation's history."""
        return Message("assistant", self.text, tool_calls=self.tool_calls)


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of one client's activity.

    `rate_limited` counts attempts answered 429 or 503 (server busy). Latency
    percentiles are in seconds over the most recent successful attempts (time on the wire);
    `wait_p50`/`wait_p95` are the time requests spent waiting for a slot. With a cache,
    `cache_hits` counts calls (embeddings: texts) answered from it, which are in no other
    count, and `cache_misses` those it had to send.
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
    prompt_tokens: int = 0  # totals the server reported for answered requests
    completion_tokens: int = 0
    cache_hits: int = 0  # calls answered from the cache (no request), and calls it missed
    cache_misses: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens so far."""
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain dict, for logging or JSON."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """What a provider reports when a stream reaches its end marker."""

    finish_reason: str | None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # assembled from the stream's tool-call deltas


class TextStream(AsyncIterator[str], AsyncClosing):
    """Text deltas of one streamed completion; holds its endpoint slot until it ends or closes.

    Use `async with client.stream(...) as deltas: async for delta in deltas: ...`: leaving the
    block early (break, an exception) gives the slot back at once. A stream left half-read
    keeps its slot while something refers to it, until `aclose()`; once nothing does, it is
    freed, its slot released and its HTTP answer closed (with a warning). After the last
    delta, `finish_reason`, `usage` and `tool_calls` hold what the server reported.
    """

    __slots__ = ("__weakref__", "_deltas", "_open", "finish_reason", "tool_calls", "usage")

    def __init__(self, relay: Callable[[Callable[[StreamEnd], None]], AsyncIterator[str]]) -> None:
        self._open = False  # started and not yet ended: holding a slot
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls: tuple[ToolCall, ...] = ()
        # Weakly: the relay holding the stream would make a cycle that only the cyclic GC
        # frees, so a dropped stream would keep its slot until that runs.
        self._deltas = relay(partial(_record_end, weakref.ref(self)))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        self._open = True
        try:
            return await anext(self._deltas)
        except BaseException:
            self._open = False
            raise

    async def aclose(self) -> None:
        """Stop the stream and release its slot."""
        self._open = False
        close = getattr(self._deltas, "aclose", None)
        if close is not None:
            await close()

    def __del__(self) -> None:
        if self._open:
            logging.getLogger("llmclient").warning(
                "a stream was garbage-collected before it ended or was closed: it held its "
                "endpoint slot until now; use `async with client.stream(...)`"
            )


def _record_end(stream: weakref.ref[TextStream], end: StreamEnd) -> None:
    """Keep what the server reported at the end in the stream, if it is still alive."""
    alive = stream()
    if alive is not None:
        alive.finish_reason, alive.usage = end.finish_reason, end.usage
        alive.tool_calls = end.tool_calls


def split_reasoning(text: str) -> tuple[str, str | None]:
    """A reasoning model's `<think>...</think>` block, split from the answer after it.

    >>> split_reasoning("<think>hmm</think> Yes.")
    ('Yes.', 'hmm')
    >>> split_reasoning("no thinking here")
    ('no thinking here', None)
    """
    head, closed, answer = text.rpartition("</think>")
    if not closed:
        return text, None
    reasoning = head.split("<think>", 1)[-1].strip()
    return answer.strip(), reasoning


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when empty."""
    if not sorted_values:
        return None
    rank = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[rank]
