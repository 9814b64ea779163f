"""The hooks clients and helpers use: a request's reservations on every budget it runs under.

Part of `llmclient.limits.spending`, which re-exports every name here.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from llmclient.limits._spend_tracker import BudgetTracker, Reservation
from llmclient.types import StreamEnd, Usage

__all__ = ["budgets_of", "hold", "metered", "metered_stream", "under_budget"]

T = TypeVar("T")
R = TypeVar("R")
_ACTIVE: contextvars.ContextVar[tuple[BudgetTracker, ...]] = contextvars.ContextVar(
    "llmclient_budgets", default=()
)


def budgets_of(own: BudgetTracker | None) -> tuple[BudgetTracker, ...]:
    """The trackers a request made now passes: the helper calls' it runs under, and `own`."""
    active = _ACTIVE.get()
    return active if own is None else (*active, own)


async def hold(
    trackers: tuple[BudgetTracker, ...], prompt_tokens: float, completion_tokens: float
) -> list[Reservation]:
    """Reserve a request's estimate on each of `trackers` (see `budgets_of`); raise
    `BudgetExceededError`, holding nothing, if one would be exceeded."""
    held: list[Reservation] = []
    try:
        for tracker in trackers:
            held.append(await tracker.reserve(prompt_tokens, completion_tokens))
    except BaseException:
        for reservation in held:
            await reservation.settle(None, charge_estimate=False)
        raise
    return held


async def metered(
    held: list[Reservation], call: Awaitable[T], usage_of: Callable[[T], Usage | None]
) -> T:
    """Await `call`; settle `held` from its usage (the estimate if it reports none, nothing
    if it fails)."""
    try:
        result = await call
    except BaseException:
        for reservation in held:
            await reservation.settle(None, charge_estimate=False)
        raise
    usage = usage_of(result)
    for reservation in held:
        await reservation.settle(usage, charge_estimate=True)
    return result


async def metered_stream(
    own: BudgetTracker | None,
    prompt_tokens: float,
    completion_tokens: float,
    relay: Callable[[Callable[[StreamEnd], None]], AsyncIterator[str]],
    on_end: Callable[[StreamEnd], None],
) -> AsyncIterator[str]:
    """`relay(on_end)`'s deltas, reserved when the stream starts and settled when it ends:
    from the usage at its end, else the estimate once text arrived, else nothing."""
    trackers = budgets_of(own)
    if not trackers:
        async for delta in relay(on_end):
            yield delta
        return
    held = await hold(trackers, prompt_tokens, completion_tokens)
    ended: list[Usage | None] = []

    def end(part: StreamEnd) -> None:
        ended.append(part.usage)
        on_end(part)

    relayed = False
    parts = relay(end)
    try:
        async for delta in parts:
            relayed = True
            yield delta
    finally:
        usage = ended[0] if ended else None
        for reservation in held:
            await reservation.settle(usage, charge_estimate=relayed or bool(ended))
        close = getattr(parts, "aclose", None)
        if close is not None:
            await close()


def under_budget(
    tracker: BudgetTracker, coro_fn: Callable[[T], Awaitable[R]]
) -> Callable[[T], Awaitable[R]]:
    """`coro_fn` with every request it makes counted against `tracker`; once the budget has
    stopped, a call raises its `BudgetExceededError` without running `coro_fn` at all."""

    @functools.wraps(coro_fn)
    async def budgeted(item: T) -> R:
        if tracker.refusal is not None:
            raise tracker._refused(tracker.refusal.spent, None)
        token = _ACTIVE.set((*_ACTIVE.get(), tracker))
        try:
            return await coro_fn(item)
        finally:
            _ACTIVE.reset(token)

    return budgeted
