"""One request's life: admission, lease, timeout, retry, stream relay and recording.

`Pipeline` runs a provider call under an endpoint's limits and a retry policy; all it knows
of a provider is a function that translates the provider's exceptions into `LLMError`s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from tenacity import RetryCallState

from llmclient._attempt import Attempt, Deadline, Recorder
from llmclient.errors import (
    IncompleteStreamError,
    LLMError,
    MalformedResponseError,
    RequestTimeoutError,
)
from llmclient.limits.admission import Admission
from llmclient.profiles import ConcurrencyProfile
from llmclient.retry import build_retrying, gave_up_waiting
from llmclient.telemetry import detect_opentelemetry
from llmclient.telemetry._events import (
    OPERATIONS,
    SHARED,
    Observer,
    RequestInfo,
    RequestTrace,
)
from llmclient.types import StreamEnd, Usage

__all__ = ["Attempt", "Deadline", "Pipeline", "Recorder"]

logger = logging.getLogger("llmclient")
T = TypeVar("T")

Classify = Callable[[Exception], LLMError | None]


class Pipeline:
    """Runs one client's provider calls under its endpoint's limits and its retry policy."""

    __slots__ = (
        "_classify",
        "_endpoint",
        "_secret",
        "name",
        "observers",
        "profile",
        "provider",
        "recorder",
    )

    def __init__(
        self,
        provider: str,
        name: str,
        profile: ConcurrencyProfile,
        endpoint: Callable[[], Admission],
        classify: Classify,
        secret: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.provider = provider
        self.name = name
        self.profile = profile
        self.recorder = Recorder()
        self._endpoint = endpoint
        self._classify = classify
        self._secret = secret  # the API key: scrubbed from every error raised
        self.observers: tuple[Observer, ...] = () if observer is None else (observer,)
        detect_opentelemetry()

    # ------------------------------------------------------------------ one call
    async def call(
        self,
        operation: str,
        send: Callable[..., Awaitable[T]],
        estimated_tokens: int,
        usage_of: Callable[[T], Usage | None],
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[T, int, float]:
        """`send()` under limits and retries; return its result, attempts made, time taken.

        An attempt the admission routes to another server (a pool's) is `send(base_url=url)`.
        `model` and `messages` are what telemetry observers are told the request is.
        """
        trace = self._trace(operation, model, messages, streaming=False)
        # a partial, not a closure: one coroutine frame less per attempt
        attempt = partial(self._attempt, operation, send, estimated_tokens, usage_of, trace)
        try:
            outcome = await self._with_retries(attempt, trace)
        except BaseException as exc:
            if trace is not None:
                trace.finished(error=exc)
            raise
        self.recorder.completed += 1
        if trace is not None:
            trace.finished(outcome[0], usage_of(outcome[0]))
        return outcome

    def _trace(
        self,
        operation: str,
        model: str | None,
        messages: Sequence[Mapping[str, Any]] | None,
        streaming: bool,
    ) -> RequestTrace | None:
        """The request's telemetry trace; None (the common case) when nobody observes."""
        if not self.observers and not SHARED.observers:
            return None
        operation = OPERATIONS.get(operation, operation)
        info = RequestInfo(operation, self.provider, self.name, model, messages, streaming)
        return RequestTrace((*SHARED.observers, *self.observers), info)

    async def _attempt(
        self,
        operation: str,
        send: Callable[..., Awaitable[T]],
        estimated_tokens: int,
        usage_of: Callable[[T], Usage | None],
        trace: RequestTrace | None,
    ) -> T:
        attempt = await self._admit(estimated_tokens, trace)
        url = attempt.ticket.base_url  # a pool's server: the provider call goes there
        failure: LLMError | None = None
        deadline = Deadline(self.profile.timeout)
        try:
            result = await (send() if url is None else send(base_url=url))
        except BaseException as exc:
            if deadline.stop(exc):  # its own cancellation: the attempt timed out
                timed_out = TimeoutError()
                timed_out.__cause__ = exc
                exc = timed_out
            error = self.translate(exc, attempt.where)
            latency = attempt.finish(error, cancelled=error is None)
            if error is None:
                raise
            attempt.log(self.provider, self.name, operation, latency, error)
            failure = self.chained(error, exc)
        deadline.stop()
        if failure is not None:
            raise failure  # outside `except`: Python chains no hidden __context__ to it
        latency = attempt.finish(None, usage_of(result))
        attempt.log(self.provider, self.name, operation, latency, None)
        return result

    async def _admit(self, estimated_tokens: int, trace: RequestTrace | None) -> Attempt:
        admission = self._endpoint()
        recorder = self.recorder
        recorder.waiting += 1
        if trace is not None:
            trace.slot_wait_started()
        asked = time.monotonic()
        try:
            ticket = await admission.admit(estimated_tokens, self.profile.retry.max_server_wait)
        except BaseException as exc:
            if trace is not None:
                limit = admission.concurrency_limit
                trace.slot_wait_abandoned(time.monotonic() - asked, exc, limit)
            raise
        finally:
            recorder.waiting -= 1
        waited = time.monotonic() - asked
        recorder.waits.append(waited)
        if trace is not None:
            trace.slot_acquired(waited)
        return Attempt(ticket, recorder, waited, trace)

    async def _with_retries(
        self, attempt: Callable[[], Awaitable[T]], trace: RequestTrace | None = None
    ) -> tuple[T, int, float]:
        """The first attempt runs bare (the common case); tenacity takes over on a retryable
        failure, replaying that failure as its own first attempt so waits and stops count it."""
        started = time.monotonic()
        try:
            return await attempt(), 1, time.monotonic() - started
        except LLMError as error:
            if not error.retryable or self.profile.retry.max_attempts == 1:
                self._failed(error, 1, started)
                raise
            first: LLMError | None = error
        except BaseException:
            self.recorder.failed += 1
            raise

        attempts = 1

        async def replay_then_attempt() -> T:
            nonlocal first, attempts
            if first is not None:
                error, first = first, None
                raise error
            attempts += 1
            return await attempt()

        policy = self.profile.retry
        budget = self._endpoint().budget
        log_retry = self._log_retry if trace is None else partial(self._log_retry, trace=trace)
        retrying = build_retrying(policy, started, log_retry, budget)
        try:
            result: T = await retrying(replay_then_attempt)
        except LLMError as error:
            gave_up_waiting(error, policy, started)
            self._failed(error, attempts, started)
            raise
        except BaseException:
            self.recorder.failed += 1
            raise
        return result, attempts, time.monotonic() - started

    def _failed(self, error: LLMError, attempts: int, started: float) -> None:
        self.recorder.failed += 1
        error.attempts = attempts
        error.elapsed = time.monotonic() - started

    # ------------------------------------------------------------------ streams
    async def stream(
        self,
        open_parts: Callable[..., AsyncIterator[str | StreamEnd]],
        estimated_tokens: int,
        on_end: Callable[[StreamEnd], None],
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
    ) -> AsyncIterator[str]:
        """Relay a stream's text deltas; it must end with the provider's `StreamEnd`.

        Opening is retried until the first part arrives; after that an error ends the stream.
        A stream the admission routes to another server (a pool's) is `open_parts(base_url=url)`.
        A stream that stops without its end marker raises `IncompleteStreamError`.
        """
        trace = self._trace("chat", model, messages, streaming=True)

        async def open_stream() -> tuple[Attempt, AsyncIterator[str | StreamEnd], str | StreamEnd]:
            attempt = await self._admit(estimated_tokens, trace)
            url = attempt.ticket.base_url  # a pool's server: the stream opens there
            parts = open_parts() if url is None else open_parts(base_url=url)
            try:
                first = await self._next_part(parts, attempt.where)
            except BaseException as exc:
                error = exc if isinstance(exc, LLMError) else None
                attempt.finish(error, cancelled=error is None)
                await _close_quietly(parts)
                raise
            return attempt, parts, first

        try:
            (attempt, parts, part), _, _ = await self._with_retries(open_stream, trace)
        except BaseException as exc:
            if trace is not None:
                trace.finished(error=exc)
            raise
        error: LLMError | None = None
        broken: BaseException | None = None  # cancelled, or not an llmclient error
        usage: Usage | None = None
        collect = None if trace is None or trace.collected is None else trace.collected.append
        try:
            while not isinstance(part, StreamEnd):
                if collect is not None:
                    collect(part)
                yield part
                part = await self._next_part(parts, attempt.where)
            usage = part.usage
            on_end(part)
        except LLMError as exc:
            error = exc
            raise
        except GeneratorExit:  # the consumer stopped early: the answer was not wrong
            raise
        except BaseException as exc:
            broken = exc
            raise
        finally:
            attempt.finish(error, usage, cancelled=broken is not None)
            if trace is not None:
                end = part if isinstance(part, StreamEnd) else None
                trace.finished(end, usage, error or broken)
            await _close_quietly(parts)
            if error is None and broken is None:
                self.recorder.completed += 1
            else:
                self.recorder.failed += 1

    async def _next_part(self, parts: AsyncIterator[T], where: str | None = None) -> T:
        """The stream's next part within the timeout; provider errors translated."""
        try:
            async with asyncio.timeout(self.profile.timeout):
                return await anext(parts)
        except StopAsyncIteration:
            raise IncompleteStreamError(
                "the stream ended without its end marker (cut off, or not a stream)",
                provider=self.provider,
                endpoint=where or self.name,
            ) from None
        except Exception as exc:
            error = self.translate(exc, where)
            if error is None:
                raise
            failure = self.chained(error, exc)
        raise failure  # outside `except`: Python chains no hidden __context__ to it

    # ------------------------------------------------------------------ errors
    def chained(self, error: LLMError, exc: BaseException) -> LLMError:
        """`error`, to raise outside any `except`, caused by the provider's `exc`; with no
        cause nor context at all when the API key shows in `exc` or anything it chains to."""
        if self._shows_secret(exc):
            error.__cause__ = error.__context__ = None
            error.__suppress_context__ = True
        elif error is not exc:
            error.__cause__ = exc
            error.__suppress_context__ = True
        return error

    def _shows_secret(self, exc: BaseException) -> bool:
        """Whether the API key is in the text, arguments or attributes of `exc` or of any
        exception it reaches by `__cause__` and `__context__` (shown in tracebacks or not)."""
        secret = self._secret
        todo: list[BaseException | None] = [exc]
        seen: set[int] = set()
        while secret and todo:
            linked = todo.pop()
            if linked is None or id(linked) in seen:  # a chain can loop
                continue
            seen.add(id(linked))
            shown = (str(linked), repr(linked.args), repr(getattr(linked, "__dict__", {})))
            if any(secret in text for text in shown):
                return True
            todo += [linked.__cause__, linked.__context__]
        return False

    def translate(self, error: BaseException, where: str | None = None) -> LLMError | None:
        """The llmclient error for a provider exception; None for cancellation and bugs.

        Its message never holds the API key, and it names the endpoint (`where`, a pool's
        server, if given).
        """
        if isinstance(error, LLMError):
            translated: LLMError | None = error
        elif not isinstance(error, Exception):
            return None  # cancellation, KeyboardInterrupt: never translated
        elif isinstance(error, TimeoutError):
            translated = RequestTimeoutError(
                f"no answer within {self.profile.timeout:g}s", provider=self.provider
            )
        else:
            translated = self._classify(error)
        if translated is None:
            return None
        if translated.endpoint is None:
            translated.endpoint = where or self.name
        if self._secret and self._secret in translated.message:
            translated.message = translated.message.replace(self._secret, "***")
        translated.args = (translated._render(),)
        return translated

    def check_count(self, asked: int, got: int) -> None:
        """Refuse an answer with the wrong number of items (embeddings)."""
        if asked != got:
            raise MalformedResponseError(
                f"asked for {asked} embeddings, got {got}",
                provider=self.provider,
                endpoint=self.name,
            )

    # ------------------------------------------------------------------ logging
    def _log_retry(self, state: RetryCallState, trace: RequestTrace | None = None) -> None:
        self.recorder.retries += 1
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        reason = f"{error.kind}: {error.message}" if isinstance(error, LLMError) else repr(error)
        logger.warning(
            "%s %s: attempt %d failed (%s); retrying in %.2fs",
            self.provider,
            getattr(error, "endpoint", None) or self.name,
            state.attempt_number,
            reason,
            wait,
        )
        if trace is not None and isinstance(error, LLMError):
            trace.retry_scheduled(error, wait)


async def _close_quietly(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a broken stream must not hide the real error
            logger.debug("error while closing a stream", exc_info=True)
