"""`BudgetTracker`: what one `Budget` has spent, counted in this process or in Redis.

Part of `llmclient.limits.spending`, which re-exports every name here.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from llmclient.errors import BudgetExceededError, ConfigurationError
from llmclient.limits._spend_caps import CAPS, Budget, BudgetSpent, Estimate
from llmclient.types import Usage

if TYPE_CHECKING:
    from llmclient.limits.backends.base import LimitBackend

__all__ = ["BudgetStore", "BudgetTracker", "Reservation", "Reserved", "fits"]


Reserved = tuple[object | None, "BudgetSpent"]  # a reservation (None: refused), spent before


class BudgetStore(Protocol):
    """Where a tracker keeps its count: this process, or Redis."""

    async def reserve(self, budget: Budget, estimate: Estimate) -> Reserved:
        """Reserve `estimate` if it fits every cap: (a reservation or None, spent before)."""
        ...

    async def settle(self, reservation: object, estimate: Estimate, actual: Estimate) -> None:
        """Drop a reservation and count what the request really spent."""
        ...

    async def spent(self) -> BudgetSpent:
        """The count now."""
        ...

    async def aclose(self) -> None:
        """Close this event loop's connection, if any."""
        ...

    poll: float  # seconds between two checks of a count other processes may change


def fits(budget: Budget, spent: BudgetSpent, reserved: Estimate, estimate: Estimate) -> bool:
    """Whether `estimate` on top of what is spent and reserved stays within every cap."""
    prompt = spent.prompt_tokens + reserved.prompt + estimate.prompt
    completion = spent.completion_tokens + reserved.completion + estimate.completion
    checks = (
        (budget.total_tokens, prompt + completion),
        (budget.prompt_tokens, prompt),
        (budget.completion_tokens, completion),
        (budget.cost, spent.cost + reserved.cost + estimate.cost),
    )
    return all(cap is None or value <= cap + 1e-9 for cap, value in checks)


class _LocalStore:
    """A count in this process (any thread, any event loop)."""

    __slots__ = ("_lock", "_reserved", "_spent")
    poll = 1.0  # settles here wake the waiters; this is only a safety net

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent = BudgetSpent()
        self._reserved = Estimate(0.0, 0.0, 0.0)

    async def reserve(self, budget: Budget, estimate: Estimate) -> Reserved:
        with self._lock:
            before = self._snapshot()
            if not fits(budget, self._spent, self._reserved, estimate):
                return None, before
            self._reserved = _plus(self._reserved, estimate)
            return estimate, before

    async def settle(self, reservation: object, estimate: Estimate, actual: Estimate) -> None:
        with self._lock:
            r = _plus(self._reserved, estimate, -1)
            self._reserved = Estimate(max(0.0, r.prompt), max(0.0, r.completion), max(0.0, r.cost))
            s = self._spent
            self._spent = BudgetSpent(
                s.prompt_tokens + actual.prompt,
                s.completion_tokens + actual.completion,
                s.cost + actual.cost,
            )

    async def spent(self) -> BudgetSpent:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> BudgetSpent:
        s, r = self._spent, self._reserved
        return BudgetSpent(
            s.prompt_tokens, s.completion_tokens, s.cost, r.prompt + r.completion, r.cost
        )

    async def aclose(self) -> None:
        pass


def _plus(a: Estimate, b: Estimate, sign: float = 1.0) -> Estimate:
    return Estimate(
        a.prompt + sign * b.prompt, a.completion + sign * b.completion, a.cost + sign * b.cost
    )


class BudgetTracker:
    """What one `Budget` has spent, and the gate its requests pass.

    `limits` is where the count lives: `"local"` (this process) or the Redis the client's
    shared limits use (a URL or a `RedisBackend`), where every tracker of the same budget
    `name` shares one count (see docs/budgets.md). Once a request is refused, every later
    one is too (`stopped`), so a job stops instead of squeezing in smaller requests.
    """

    __slots__ = ("_lock", "_settles", "_store", "_waiters", "budget", "refusal")

    def __init__(self, budget: Budget, limits: str | LimitBackend = "local") -> None:
        if not isinstance(budget, Budget):
            raise TypeError(f"budget={budget!r}: must be a Budget")
        self.budget = budget
        self.refusal: BudgetExceededError | None = None  # the first refusal
        self._store = _store_for(budget, limits)
        self._lock = threading.Lock()
        self._settles = 0  # settles so far: a waiter made after one need not wait for another
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def stopped(self) -> bool:
        """Whether a request was refused: every later one is."""
        return self.refusal is not None

    def estimate(self, prompt_tokens: float, completion_tokens: float) -> Estimate:
        """A request's expected spend under this budget's prices."""
        cost = self.budget.cost_of(prompt_tokens, completion_tokens)
        return Estimate(float(prompt_tokens), float(completion_tokens), cost)

    async def reserve(self, prompt_tokens: float, completion_tokens: float) -> Reservation:
        """Hold the request's estimate, or raise `BudgetExceededError` if it would not fit."""
        if self.refusal is not None:
            raise self._refused(self.refusal.spent, None)
        estimate = self.estimate(prompt_tokens, completion_tokens)
        while True:
            seen = self._settles
            reservation, spent = await self._store.reserve(self.budget, estimate)
            if reservation is not None:
                return Reservation(self, reservation, estimate)
            if self.refusal is not None or not (spent.reserved_tokens or spent.reserved_cost):
                break
            # Requests in flight hold part of the budget: once they settle it may fit.
            waiter = self._waiter()
            try:
                if self._settles == seen:  # none settled since we asked
                    async with asyncio.timeout(self._store.poll):
                        await waiter[1]
            except TimeoutError:
                pass
            finally:
                self._forget(waiter)
        if self.refusal is not None:  # a fresh error per request: each call ends with its own
            raise self._refused(self.refusal.spent, None)
        self.refusal = error = self._refused(spent, estimate)
        self._wake()  # the others waiting are refused too
        raise error

    def _waiter(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]:
        """A future the next settle of this tracker (in any thread) completes."""
        loop = asyncio.get_running_loop()
        waiter = (loop, loop.create_future())
        with self._lock:
            self._waiters.append(waiter)
        return waiter

    def _forget(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Let every request waiting for room check again."""
        with self._lock:
            self._settles += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_done, future)

    async def charge(self, prompt_tokens: float, completion_tokens: float) -> None:
        """Count tokens spent outside this tracker (an earlier run's, say) against the budget."""
        actual = self.estimate(prompt_tokens, completion_tokens)
        await self._store.settle("-", Estimate(0.0, 0.0, 0.0), actual)

    async def spent(self) -> BudgetSpent:
        """What the budget has spent so far (all processes', with Redis)."""
        return await self._store.spent()

    async def aclose(self) -> None:
        """Close this event loop's connection to Redis, if any."""
        await self._store.aclose()

    def _refused(self, spent: BudgetSpent, estimate: Estimate | None) -> BudgetExceededError:
        b = self.budget
        caps = ", ".join(f"{c} {getattr(b, c):g}" for c in CAPS if getattr(b, c) is not None)
        used = (
            f"spent {spent.total_tokens:.0f} tokens (prompt {spent.prompt_tokens:.0f}, "
            f"completion {spent.completion_tokens:.0f})"
        )
        if b.cost is not None:
            used += f", cost {spent.cost:.6g}"
        if spent.reserved_tokens:
            used += f", {spent.reserved_tokens:.0f} tokens held by requests in flight"
        if estimate is None:
            why = "it stopped after an earlier request was refused"
        else:
            tokens = estimate.prompt + estimate.completion
            why = f"the next request (about {tokens:.0f} tokens) would exceed it"
        return BudgetExceededError(
            f"budget {b.name!r} ({caps}) reached: {used}; {why}", budget=b, spent=spent
        )

    def __repr__(self) -> str:
        state = ", stopped" if self.stopped else ""
        return f"BudgetTracker({self.budget!r}, {type(self._store).__name__}{state})"


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _store_for(budget: Budget, limits: object) -> BudgetStore:
    """The local count, or the Redis one for a Redis URL or backend."""
    url = limits if isinstance(limits, str) else getattr(limits, "url", None)
    if not isinstance(url, str) or url == "local":
        return _LocalStore()
    from llmclient.limits.backends import REDIS_SCHEMES, redis_backend

    if url.partition("://")[0] not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"invalid argument: limits={url!r}: must be 'local' or a Redis URL"
        )
    try:
        from llmclient.limits.backends._redis_budget import RedisBudgetStore
        from llmclient.limits.backends.redis import RedisBackend
    except ImportError as error:
        raise ConfigurationError(
            f"a budget in Redis needs the redis package: pip install 'llmclient[redis]' ({error})"
        ) from None
    # a bare URL gets the process's backend for it, with a RedisBackend's defaults
    backend = limits if isinstance(limits, RedisBackend) else redis_backend(url)
    return RedisBudgetStore(
        url,
        backend.prefix,
        budget.name,
        on_error=backend.on_error,
        wait_timeout=backend.wait_timeout,
    )


@dataclass(slots=True)
class Reservation:
    """One request's hold on one tracker, settled exactly once."""

    tracker: BudgetTracker
    handle: object
    estimate: Estimate
    settled: bool = field(default=False)

    async def settle(self, usage: Usage | None, charge_estimate: bool) -> None:
        """Count `usage` (the estimate when None and `charge_estimate`, else nothing)."""
        if self.settled:
            return
        self.settled = True
        tracker = self.tracker
        if usage is not None:
            actual = tracker.estimate(usage.prompt_tokens, usage.completion_tokens)
        elif charge_estimate:
            actual = self.estimate
        else:
            actual = Estimate(0.0, 0.0, 0.0)
        try:
            await tracker._store.settle(self.handle, self.estimate, actual)
        finally:
            tracker._wake()
