"""The callback interface: `Observer`, the request and attempt records it receives, and the
registry of observers for every client (`add_observer`).

The pipeline makes one `RequestTrace` per request only when an observer is registered, so
with none the cost of telemetry is one check per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from llmclient.errors import LLMError
from llmclient.types import Usage

__all__ = [
    "AttemptInfo",
    "Observer",
    "RequestInfo",
    "RequestTrace",
    "add_observer",
    "observers",
    "remove_observer",
]

logger = logging.getLogger("llmclient")

#: The GenAI semantic conventions' operation name for each pipeline operation.
OPERATIONS = {"chat": "chat", "embed": "embeddings"}


class RequestInfo:
    """One request (a `generate`, `stream` or embedding batch call) as observers see it.

    The pipeline fills it in as the request goes: `attempts`, then at the end `duration`,
    `usage`, `response_model`, `finish_reason` and `error`. `messages` is the chat request's
    messages (the prompt: export it only when the user asked); `output` holds the answer text
    only when an observer sets `capture_content`. `state` is free for observers, keyed by
    themselves. The API key is never here.
    """

    __slots__ = (
        "attempts",
        "duration",
        "endpoint",
        "error",
        "finish_reason",
        "messages",
        "model",
        "operation",
        "output",
        "provider",
        "response_model",
        "started",
        "state",
        "streaming",
        "usage",
    )

    def __init__(
        self,
        operation: str,
        provider: str,
        endpoint: str,
        model: str | None,
        messages: Sequence[Mapping[str, Any]] | None,
        streaming: bool,
    ) -> None:
        self.operation = operation  # "chat" or "embeddings"
        self.provider = provider  # llmclient's provider name: "openai", "ollama", "azure"
        self.endpoint = endpoint  # scheme, host, port and path; never credentials
        self.model = model
        self.messages = messages
        self.streaming = streaming
        self.started = time.monotonic()
        self.attempts = 0
        self.duration = 0.0
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.finish_reason: str | None = None
        self.output: str | None = None
        self.error: BaseException | None = None  # an LLMError, or cancellation and the like
        self.state: dict[object, Any] = {}

    def __repr__(self) -> str:
        return (
            f"RequestInfo(operation={self.operation!r}, provider={self.provider!r}, "
            f"endpoint={self.endpoint!r}, model={self.model!r}, attempts={self.attempts})"
        )


class AttemptInfo(NamedTuple):
    """How one attempt ended.

    `admitted` is False when it never got a slot (cancelled while waiting); then `latency`
    is 0. `cancelled` marks an attempt its caller stopped (no answer). `overload` marks an
    answer that refused or timed out from overload (429, 503 busy, a timeout with every slot
    taken). `concurrency_limit` is the endpoint's limit afterwards.
    """

    number: int
    admitted: bool
    waited: float
    latency: float
    error: BaseException | None
    cancelled: bool
    overload: bool
    concurrency_limit: int


class Observer:
    """Receives the events of every request's life; subclass it and override what you need.

    Methods run synchronously in the event loop that sends the request: keep them quick and
    never block. An exception raised by one is logged (once per method) and dropped; it never
    fails the request. Each attempt is `slot_wait_started`, then `slot_acquired` (unless it is
    cancelled while waiting), then `attempt_finished`; so "waiting" and "in flight" counts can be
    kept from these events alone.
    """

    #: Ask for `RequestInfo.output` (the answer text): off unless you need the content.
    capture_content: bool = False

    def request_started(self, request: RequestInfo) -> None:
        """A request begins (before it waits for its first slot)."""

    def slot_wait_started(self, request: RequestInfo) -> None:
        """An attempt starts waiting for admission (pause, rate limits, a slot)."""

    def slot_acquired(self, request: RequestInfo, waited: float) -> None:
        """An attempt was admitted after `waited` seconds and goes on the wire."""

    def attempt_finished(self, request: RequestInfo, attempt: AttemptInfo) -> None:
        """An attempt ended: answered, failed, or cancelled."""

    def retry_scheduled(self, request: RequestInfo, error: LLMError, delay: float) -> None:
        """Attempt `request.attempts` failed with `error`; the next starts in `delay` seconds."""

    def limit_changed(self, request: RequestInfo, limit: int, previous: int) -> None:
        """The endpoint's concurrency limit moved when one of `request`'s attempts finished."""

    def endpoint_paused(self, request: RequestInfo, seconds: float) -> None:
        """The server asked (Retry-After) to hold back every request to it for `seconds`."""

    def request_finished(self, request: RequestInfo) -> None:
        """The request ended; `request.error` is None when it succeeded."""


class _Registry:
    """The observers every client reports to, as an immutable tuple (cheap to check)."""

    __slots__ = ("observers",)

    def __init__(self) -> None:
        self.observers: tuple[Observer, ...] = ()


SHARED = _Registry()


def add_observer(observer: Observer) -> None:
    """Report the requests of every client (those made before too) to `observer`."""
    if not isinstance(observer, Observer):
        raise TypeError(f"observer={observer!r}: must be an llmclient.telemetry.Observer")
    if observer not in SHARED.observers:
        SHARED.observers = (*SHARED.observers, observer)


def remove_observer(observer: Observer) -> None:
    """Stop reporting to `observer` (nothing happens if it was not registered)."""
    SHARED.observers = tuple(o for o in SHARED.observers if o is not observer)


def observers() -> tuple[Observer, ...]:
    """The observers registered with `add_observer`, in order."""
    return SHARED.observers


_failed: set[tuple[int, str]] = set()  # (observer id, method) already logged


class RequestTrace:
    """What the pipeline calls at each step of one request; it tells every observer."""

    __slots__ = ("capture", "collected", "info", "observers")

    def __init__(self, observers: tuple[Observer, ...], info: RequestInfo) -> None:
        self.observers = observers
        self.info = info
        self.capture = any(o.capture_content for o in observers)
        self.collected: list[str] | None = [] if self.capture and info.streaming else None
        self._tell("request_started")

    def _tell(self, method: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(self.info, *args)
            except Exception:
                key = (id(observer), method)
                if key not in _failed:
                    _failed.add(key)
                    logger.exception("telemetry observer %r failed in %s", observer, method)

    def slot_wait_started(self) -> None:
        """An attempt asks for admission."""
        self.info.attempts += 1
        self._tell("slot_wait_started")

    def slot_acquired(self, waited: float) -> None:
        """The attempt was admitted."""
        self._tell("slot_acquired", waited)

    def slot_wait_abandoned(self, waited: float, error: BaseException, limit: int) -> None:
        """The attempt stopped waiting without a slot (cancelled, or admission failed)."""
        cancelled = not isinstance(error, Exception)
        attempt = AttemptInfo(
            self.info.attempts, False, waited, 0.0, error, cancelled, False, limit
        )
        self._tell("attempt_finished", attempt)

    def attempt_finished(
        self,
        waited: float,
        latency: float,
        error: BaseException | None,
        cancelled: bool,
        overload: bool,
        limits: tuple[int, int],
        paused: float,
    ) -> None:
        """An admitted attempt ended; `limits` is the concurrency limit before and after it."""
        before, after = limits
        number = self.info.attempts
        attempt = AttemptInfo(number, True, waited, latency, error, cancelled, overload, after)
        self._tell("attempt_finished", attempt)
        if after != before:
            self._tell("limit_changed", after, before)
        if paused > 0:
            self._tell("endpoint_paused", paused)

    def retry_scheduled(self, error: LLMError, delay: float) -> None:
        """A retry will follow after `delay` seconds."""
        self._tell("retry_scheduled", error, delay)

    def finished(
        self, result: object = None, usage: Usage | None = None, error: BaseException | None = None
    ) -> None:
        """The request ended with `result` (a `Completion`, a `StreamEnd`...) or `error`."""
        info = self.info
        info.duration = time.monotonic() - info.started
        info.error = error
        if error is None:
            info.response_model = getattr(result, "model", None) or info.response_model
            info.finish_reason = getattr(result, "finish_reason", None) or info.finish_reason
            info.usage = usage
            if self.collected is not None:
                info.output = "".join(self.collected)
            elif self.capture:
                text = getattr(result, "text", None)
                info.output = text if isinstance(text, str) else None
        self._tell("request_finished")
