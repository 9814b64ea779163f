"""One attempt's bookkeeping: its deadline, its hold on the admission's ticket, and the
client's counters (`Recorder`, behind `client.stats`) it updates when it ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from llmclient.errors import LLMError, RateLimitError, ServerBusyError
from llmclient.limits import Outcome
from llmclient.limits.admission import Ticket, outcome_of
from llmclient.telemetry._events import RequestTrace
from llmclient.types import Stats, Usage, percentile

__all__ = ["Attempt", "Deadline", "Recorder"]

logger = logging.getLogger("llmclient")
_SAMPLES = 4096  # latencies kept for the stats percentiles


class Recorder:
    """Counters and recent latencies behind `client.stats`."""

    __slots__ = (
        "completed",
        "completion_tokens",
        "failed",
        "in_flight",
        "latencies",
        "prompt_tokens",
        "rate_limited",
        "retries",
        "waiting",
        "waits",
    )

    def __init__(self) -> None:
        self.in_flight = self.waiting = self.completed = 0
        self.failed = self.retries = self.rate_limited = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.latencies: deque[float] = deque(maxlen=_SAMPLES)
        self.waits: deque[float] = deque(maxlen=_SAMPLES)

    def stats(self, concurrency_limit: int) -> Stats:
        """A snapshot of the counters and latency percentiles."""
        latencies, waits = sorted(self.latencies), sorted(self.waits)
        return Stats(
            in_flight=self.in_flight,
            waiting=self.waiting,
            completed=self.completed,
            failed=self.failed,
            retries=self.retries,
            rate_limited=self.rate_limited,
            latency_p50=percentile(latencies, 0.50),
            latency_p95=percentile(latencies, 0.95),
            latency_p99=percentile(latencies, 0.99),
            wait_p50=percentile(waits, 0.50),
            wait_p95=percentile(waits, 0.95),
            concurrency_limit=concurrency_limit,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )


class Deadline:
    """`asyncio.timeout(delay)` for one attempt at about half its cost: one timer handle
    and no context manager. `stop` it once the attempt ends, however it ends."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_task")

    def __init__(self, delay: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def stop(self, exc: BaseException | None = None) -> bool:
        """End the deadline; True when `exc` is the cancellation it caused (as
        `asyncio.timeout` decides: no other cancellation was asked for meanwhile)."""
        self._handle.cancel()
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling and type(exc) is asyncio.CancelledError


class Attempt:
    """One attempt's hold on its admission's ticket: admitted, on the wire, then finished
    exactly once (the ticket does the limits' bookkeeping; this, the client's stats)."""

    __slots__ = ("finished", "recorder", "started", "ticket", "trace", "waited")

    def __init__(
        self,
        ticket: Ticket,
        recorder: Recorder,
        waited: float,
        trace: RequestTrace | None = None,
    ) -> None:
        self.ticket = ticket
        self.trace = trace
        self.recorder = recorder
        self.waited = waited
        self.started = time.monotonic()
        self.finished = False
        recorder.in_flight += 1

    def finish(
        self, error: LLMError | None, usage: Usage | None = None, cancelled: bool = False
    ) -> float:
        """Release the ticket, record the outcome; return the time on the wire."""
        latency = time.monotonic() - self.started
        if self.finished:
            return latency
        self.finished = True
        recorder = self.recorder
        recorder.in_flight -= 1
        ticket, trace = self.ticket, self.trace
        limit_before = ticket.concurrency_limit if trace is not None else 0
        paused = ticket.release(error, latency, usage, cancelled=cancelled)
        if cancelled:
            pass
        elif error is None:
            recorder.latencies.append(latency)
            if usage is not None:
                recorder.prompt_tokens += usage.prompt_tokens
                recorder.completion_tokens += usage.completion_tokens
        elif error.overload and isinstance(error, RateLimitError | ServerBusyError):
            recorder.rate_limited += 1
        if trace is not None:
            limits = (limit_before, ticket.concurrency_limit)
            dropped = not cancelled and outcome_of(error) is Outcome.DROPPED
            trace.attempt_finished(self.waited, latency, error, cancelled, dropped, limits, paused)
        return latency

    def log(
        self, provider: str, name: str, operation: str, latency: float, error: LLMError | None
    ) -> None:
        """Log how the attempt ended, at DEBUG (`name`: the endpoint's, outside pools)."""
        if logger.isEnabledFor(logging.DEBUG):
            outcome = "ok" if error is None else f"{error.kind} {error.status_code or ''}".strip()
            logger.debug(
                "%s %s: %s %s in %.0f ms (waited %.0f ms for a slot)",
                provider,
                self.where or name,
                operation,
                outcome,
                latency * 1000,
                self.waited * 1000,
            )

    @property
    def where(self) -> str | None:
        """The pool server it went to, for messages (None outside pools)."""
        return self.ticket.where
