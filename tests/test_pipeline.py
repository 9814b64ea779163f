"""The request pipeline driven directly with fake provider calls: no provider, no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from llmclient import (
    ConcurrencyProfile,
    InvalidRequestError,
    LLMError,
    Outcome,
    RateLimitError,
    RequestTimeoutError,
    RetryPolicy,
    ServerBusyError,
    ServerError,
)
from llmclient._pipeline import Pipeline
from llmclient.errors import IncompleteStreamError, MalformedResponseError
from llmclient.limits import Endpoint, RetryBudget
from llmclient.types import StreamEnd, Usage

FAST = RetryPolicy(max_attempts=4, initial_wait=0, max_wait=0, jitter=0)


class RecordingLimit:
    """A fixed limit that remembers every sample it was given."""

    def __init__(self, limit: int) -> None:
        self.limit = self.max_limit = limit
        self.samples: list[tuple[int, Outcome]] = []

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        self.samples.append((in_flight, outcome))
        return self.limit


def classify(error: Exception) -> LLMError | None:
    """Provider exceptions of this fake provider: KeyError is a malformed answer."""
    if isinstance(error, KeyError):
        return MalformedResponseError(f"missing {error}")
    return None


def usage(_: object) -> Usage:
    """What the fake provider reports for every answer."""
    return Usage(prompt_tokens=2, completion_tokens=3)


def pipeline(limit: RecordingLimit, retry: RetryPolicy = FAST, timeout: float = 5) -> Pipeline:
    budget = RetryBudget(retry.budget_tokens, retry.budget_refund)
    endpoint = Endpoint.local("fake://endpoint", limit, budget=budget)
    profile = ConcurrencyProfile(retry=retry, timeout=timeout)
    return Pipeline("fake", "fake://endpoint", profile, lambda: endpoint, classify)


def failing_then(errors: list[BaseException], result: str) -> Callable[[], Awaitable[str]]:
    queue: Iterator[BaseException] = iter(errors)

    async def send() -> str:
        error = next(queue, None)
        if error is not None:
            raise error
        return result

    return send


async def test_first_attempt_success_counts_once() -> None:
    limit = RecordingLimit(2)
    pipe = pipeline(limit)
    result, attempts, elapsed = await pipe.call("chat", failing_then([], "ok"), 10, usage)
    assert (result, attempts) == ("ok", 1)
    assert elapsed >= 0
    assert limit.samples == [(1, Outcome.SUCCESS)]
    stats = pipe.recorder.stats(2)
    assert (stats.completed, stats.failed, stats.retries, stats.in_flight) == (1, 0, 0, 0)
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (2, 3, 5)


async def test_transient_errors_are_retried_and_reported_to_the_limit() -> None:
    limit = RecordingLimit(2)
    pipe = pipeline(limit)
    send = failing_then([ServerError("boom"), RateLimitError("slow down"), KeyError("x")], "ok")
    result, attempts, _ = await pipe.call("chat", send, 10, usage)
    assert (result, attempts) == ("ok", 4)
    assert [outcome for _, outcome in limit.samples] == [
        Outcome.IGNORED,
        Outcome.DROPPED,
        Outcome.IGNORED,
        Outcome.SUCCESS,
    ]
    assert pipe.recorder.retries == 3
    assert pipe.recorder.rate_limited == 1


async def test_exhausted_retries_raise_the_last_error_itself() -> None:
    pipe = pipeline(RecordingLimit(1), RetryPolicy(max_attempts=3, initial_wait=0, jitter=0))
    send = failing_then([ServerError("one"), KeyError("two"), ServerError("three")], "x")
    with pytest.raises(ServerError, match="three") as caught:
        await pipe.call("chat", send, 10, usage)
    assert caught.value.attempts == 3
    assert caught.value.endpoint == "fake://endpoint"
    assert pipe.recorder.failed == 1 and pipe.recorder.completed == 0


async def test_rejected_errors_are_not_retried() -> None:
    pipe = pipeline(RecordingLimit(1))
    send = failing_then([InvalidRequestError("bad"), ServerError("never reached")], "x")
    with pytest.raises(InvalidRequestError) as caught:
        await pipe.call("chat", send, 10, usage)
    assert caught.value.attempts == 1
    assert pipe.recorder.retries == 0


async def test_untranslated_errors_pass_through_and_free_the_slot() -> None:
    limit = RecordingLimit(1)
    pipe = pipeline(limit)
    with pytest.raises(ZeroDivisionError):
        await pipe.call("chat", failing_then([ZeroDivisionError()], "x"), 10, usage)
    assert limit.samples == [(1, Outcome.IGNORED)]
    assert pipe.recorder.in_flight == 0 and pipe.recorder.failed == 1


async def test_timeout_is_an_overload_sample_and_retried() -> None:
    limit = RecordingLimit(1)
    pipe = pipeline(limit, RetryPolicy(max_attempts=2, initial_wait=0, jitter=0), timeout=0.05)
    calls = 0

    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return "ok"

    result, attempts, _ = await pipe.call("chat", slow_then_fast, 10, usage)
    assert (result, attempts) == ("ok", 2)
    assert [outcome for _, outcome in limit.samples] == [Outcome.DROPPED, Outcome.SUCCESS]


async def test_cancellation_while_waiting_for_a_slot_takes_none() -> None:
    limit = RecordingLimit(1)
    pipe = pipeline(limit)
    gate = asyncio.Event()

    async def held() -> str:
        await gate.wait()
        return "held"

    first = asyncio.create_task(pipe.call("chat", held, 1, usage))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(pipe.call("chat", failing_then([], "late"), 1, usage))
    await asyncio.sleep(0.01)
    assert pipe.recorder.waiting == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    gate.set()
    assert (await first)[0] == "held"
    assert pipe.recorder.waiting == 0 and pipe.recorder.in_flight == 0
    assert limit.samples == [(1, Outcome.SUCCESS)]


async def test_stream_relays_deltas_and_retries_before_the_first() -> None:
    limit = RecordingLimit(1)
    pipe = pipeline(limit)
    opened = 0

    async def parts() -> AsyncIterator[str | StreamEnd]:
        nonlocal opened
        opened += 1
        if opened == 1:
            raise ServerError("not yet")
        for part in ("a", "b", "c"):
            yield part
        yield StreamEnd("stop", Usage(3, 3))

    ends: list[StreamEnd] = []
    received = [delta async for delta in pipe.stream(parts, 5, ends.append)]
    assert received == ["a", "b", "c"]
    assert ends == [StreamEnd("stop", Usage(3, 3))]
    assert opened == 2
    assert pipe.recorder.completed == 1 and pipe.recorder.retries == 1
    assert [outcome for _, outcome in limit.samples] == [Outcome.IGNORED, Outcome.SUCCESS]


async def test_a_stream_without_its_end_marker_is_incomplete() -> None:
    limit = RecordingLimit(1)
    pipe = pipeline(limit, RetryPolicy(max_attempts=2, initial_wait=0, jitter=0))
    opened = 0

    async def cut_off() -> AsyncIterator[str | StreamEnd]:
        nonlocal opened
        opened += 1
        yield "partial"

    received: list[str] = []
    with pytest.raises(IncompleteStreamError):
        async for delta in pipe.stream(cut_off, 5, lambda end: None):
            received.append(delta)
    assert received == ["partial"]  # text was relayed, so it was not retried
    assert opened == 1
    assert pipe.recorder.failed == 1 and pipe.recorder.completed == 0


async def test_an_empty_stream_is_retried_then_incomplete() -> None:
    pipe = pipeline(RecordingLimit(1), RetryPolicy(max_attempts=3, initial_wait=0, jitter=0))
    opened = 0

    async def nothing() -> AsyncIterator[str | StreamEnd]:
        nonlocal opened
        opened += 1
        return
        yield ""

    with pytest.raises(IncompleteStreamError) as caught:
        async for _ in pipe.stream(nothing, 5, lambda end: None):
            pass
    assert opened == 3 and caught.value.attempts == 3


async def test_errors_never_show_the_api_key_nor_chain_to_one_that_does() -> None:
    secret = "sk-very-secret-123"
    endpoint = Endpoint.local("fake://endpoint", RecordingLimit(1))

    def classify(error: Exception) -> LLMError | None:
        return InvalidRequestError(str(error))

    profile = ConcurrencyProfile(retry=FAST)
    pipe = Pipeline("fake", "fake://endpoint", profile, lambda: endpoint, classify, secret)

    async def echoes_the_key() -> str:
        raise RuntimeError(f"bad key {secret}")

    with pytest.raises(InvalidRequestError) as caught:
        await pipe.call("chat", echoes_the_key, 1, usage)
    assert secret not in str(caught.value) and "***" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_back_pressure_is_retried_past_the_attempt_limit() -> None:
    pipe = pipeline(RecordingLimit(1), RetryPolicy(max_attempts=2, initial_wait=0, jitter=0))
    busy = [ServerBusyError("busy") for _ in range(6)]
    result, attempts, _ = await pipe.call("chat", failing_then([*busy], "ok"), 10, usage)
    assert (result, attempts) == ("ok", 7)  # six 503s did not use up two attempts


async def test_back_pressure_stops_at_the_deadline() -> None:
    policy = RetryPolicy(
        max_attempts=2, max_elapsed=0.3, initial_wait=0.05, max_wait=0.05, jitter=0
    )
    pipe = pipeline(RecordingLimit(1), policy)

    async def always_busy() -> str:
        raise ServerBusyError("busy")

    with pytest.raises(ServerBusyError) as caught:
        await pipe.call("chat", always_busy, 10, usage)
    assert (
        caught.value.attempts is not None and 2 <= caught.value.attempts <= 7
    )  # retried, then stopped
    assert caught.value.elapsed is not None and caught.value.elapsed <= 0.3


async def test_the_retry_budget_stops_retrying_a_dead_server() -> None:
    policy = RetryPolicy(max_attempts=5, initial_wait=0, jitter=0, budget_tokens=4)
    pipe = pipeline(RecordingLimit(4), policy)
    sent = 0

    async def dead() -> str:
        nonlocal sent
        sent += 1
        raise ServerError("down")

    for _ in range(20):
        with pytest.raises(ServerError):
            await pipe.call("chat", dead, 10, usage)
    # Budget 4: the first failure leaves 3 tokens (more than half: one retry), the second 2;
    # from then on no retries, so 20 calls make 21 requests instead of 100.
    assert sent == 21


async def test_a_retry_after_beyond_the_cap_fails_at_once_and_says_when() -> None:
    policy = RetryPolicy(max_attempts=5, max_server_wait=60)
    limit = RecordingLimit(1)
    pipe = pipeline(limit, policy)
    send = failing_then([RateLimitError("daily quota", retry_after=86400)], "never")
    with pytest.raises(RateLimitError, match=r"asks to wait 86400s.*try again after") as caught:
        await pipe.call("chat", send, 10, usage)
    assert caught.value.attempts == 1
    endpoint = pipe._endpoint()
    assert await endpoint.state.paused_for() == 0  # the call failed; the endpoint is not paused


async def test_a_timed_out_attempt_leaves_its_task_uncancelled() -> None:
    """The attempt's deadline cancels the call, then takes its cancellation back."""
    pipe = pipeline(RecordingLimit(1), RetryPolicy(max_attempts=1), timeout=0.02)

    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    with pytest.raises(RequestTimeoutError, match="no answer within"):
        await pipe.call("chat", slow, 1, usage)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.05)  # no cancellation left pending for the caller's next await
    assert await pipe.call("chat", failing_then([], "ok"), 1, usage) == (
        "ok",
        1,
        pytest.approx(0, abs=1),
    )


async def test_a_cancelled_attempt_is_cancelled_not_timed_out() -> None:
    pipe = pipeline(RecordingLimit(1), RetryPolicy(max_attempts=1), timeout=5)
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(10)
        return "late"

    call = asyncio.create_task(pipe.call("chat", slow, 1, usage))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
