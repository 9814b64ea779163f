"""Retry policy on tenacity: which errors to retry, how long to wait, when to stop.

A server's Retry-After wins over backoff; otherwise exponential backoff with jitter.
A new `AsyncRetrying` is built for every call, so concurrent calls never share state.
`set_testing(True)` makes test suites skip every backoff wait (as stamina's does).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_none

from llmclient._checks import check_int
from llmclient.errors import LLMError
from llmclient.limits.budget import RetryBudget
from llmclient.profiles import RetryPolicy

__all__ = [
    "build_retrying",
    "gave_up_waiting",
    "is_retryable",
    "is_testing",
    "parse_retry_after",
    "set_testing",
    "stop_by_kind",
    "wait_retry_after",
]

_testing: tuple[bool, int | None] = (False, None)


def set_testing(testing: bool, *, attempts: int | None = None) -> None:
    """Test mode: retries happen without waiting, and at most `attempts` are made.

    `attempts=None` keeps each policy's own `max_attempts`, which then bounds back-pressure
    retries too (they would otherwise repeat without a pause until `max_elapsed`).
    Server-directed pauses of an endpoint (a 429's Retry-After) still apply: they are the
    server's limit, not backoff.
    """
    check_int("attempts", attempts, 1, optional=True)
    global _testing
    _testing = (bool(testing), attempts)


def is_testing() -> bool:
    """Whether `set_testing(True)` is in force."""
    return _testing[0]


def is_retryable(error: BaseException) -> bool:
    """Only llmclient errors of a retryable kind are retried."""
    return isinstance(error, LLMError) and error.retryable


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date).

    A value that is not a finite number (`nan`, `inf`) says nothing.

    >>> parse_retry_after({"retry-after-ms": "1500"})
    1.5
    >>> parse_retry_after({"retry-after": "2"})
    2.0
    >>> parse_retry_after({"retry-after-ms": "nan", "retry-after": "inf"}) is None
    True
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    ms = _seconds(lowered.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        float(value)
    except ValueError:
        return _until(value)
    return _seconds(value)


def _seconds(text: str | None) -> float | None:
    """The finite number in `text` (negative: 0), else None."""
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None


def _until(date: str) -> float | None:
    """Seconds from now to an HTTP date (0 when past), None when `date` is not one."""
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class wait_retry_after(wait_base):
    """Wait what the failed attempt's `retry_after` says, else fall back to `fallback`."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return float(retry_after)
        return self.fallback(retry_state)


class stop_by_kind(stop_base):
    """When to give up, by what failed.

    Back-pressure (`error.overload`) is retried until `deadline`; faults until
    `policy.max_attempts` attempts or until the endpoint's retry budget runs low. A wait that
    would end past the deadline, or a server-directed one longer than `max_server_wait`,
    stops at once. In test mode every attempt counts against the attempt limit.
    """

    def __init__(self, policy: RetryPolicy, started: float, budget: RetryBudget | None) -> None:
        self.policy = policy
        self.deadline = started + policy.max_elapsed
        self.budget = budget
        self.faults = 0

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > self.policy.max_server_wait:
            return True
        if time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline:
            return True
        testing, test_attempts = _testing
        attempts = retry_state.attempt_number
        if testing and attempts >= min(test_attempts or attempts + 1, self.policy.max_attempts):
            return True
        if getattr(error, "overload", False):
            return False
        self.faults += 1
        if self.faults >= self.policy.max_attempts:
            return True
        return self.budget is not None and not self.budget.allows_retry()


def build_retrying(
    policy: RetryPolicy,
    started: float,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    budget: RetryBudget | None = None,
) -> AsyncRetrying:
    """A fresh tenacity controller for one call under `policy`, begun at `started`.

    When it stops, the last error itself is raised (`reraise=True`).
    """
    wait: wait_base = wait_none()
    if not _testing[0]:
        wait = wait_retry_after(
            wait_exponential_jitter(
                multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
            )
        )
    return AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_by_kind(policy, started, budget),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )


def gave_up_waiting(error: LLMError, policy: RetryPolicy, started: float) -> None:
    """Say in `error` when to come back, if the server asked for a wait llmclient would not make.

    A wait longer than `max_server_wait`, or than what was left of `max_elapsed`, ends the call
    at once (an account's daily quota is not a pacing hint).
    """
    wait = error.retry_after
    if wait is None:
        return
    left = started + policy.max_elapsed - time.monotonic()
    if wait <= policy.max_server_wait and wait <= left:
        return
    if wait > policy.max_server_wait:
        limit = f"max_server_wait={policy.max_server_wait:g}s"
    else:
        limit = f"the {max(left, 0.0):.0f}s left of max_elapsed={policy.max_elapsed:g}s"
    error.message = (
        f"{error.message.rstrip('.')}. The server asks to wait {wait:g}s, more than "
        f"{limit}; try again {_resume(wait)}"
    )
    error.args = (error._render(),)


def _resume(wait: float) -> str:
    """When a wait of `wait` seconds from now ends, for a message."""
    try:
        when = time.localtime(time.time() + wait)
    except (OverflowError, OSError, ValueError):  # past what the platform's clock can show
        return f"in {wait:g}s"
    return "after " + time.strftime("%Y-%m-%d %H:%M:%S %Z", when)
