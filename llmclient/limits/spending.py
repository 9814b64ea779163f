"""Token and cost budgets: `Budget` (the caps), `BudgetTracker` (what one budget has spent).

Each request is estimated before it is sent (as for tpm: prompt characters / 4, plus
`max_tokens` or 256 for the answer) and reserved against every budget that applies: the
client's own and those of the helper calls it runs under (`budgets_of`). A request whose
estimate does not fit waits while requests in flight hold part of the budget (they settle
from the usage they report, usually less than their estimate: the estimate if they report
none, nothing if they fail); when it still does not fit with none in flight, it is refused
with `BudgetExceededError`, and so is every later request of that tracker.

A tracker keeps its count in this process, or in Redis (`limits="redis://..."`), where every
process using the same budget name shares one count.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from llmclient._checks import check_text
from llmclient.errors import BudgetExceededError, ConfigurationError
from llmclient.types import StreamEnd, Usage

if TYPE_CHECKING:
    from llmclient.limits.backends.base import LimitBackend

__all__ = [
    "Budget",
    "BudgetSpent",
    "BudgetTracker",
    "budgets_of",
    "hold",
    "metered",
    "metered_stream",
    "under_budget",
]

T = TypeVar("T")
R = TypeVar("R")
_MILLION = 1_000_000
_CAPS = ("total_tokens", "prompt_tokens", "completion_tokens", "cost")
_ACTIVE: contextvars.ContextVar[tuple[BudgetTracker, ...]] = contextvars.ContextVar(
    "llmclient_budgets", default=()
)


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps on what requests may spend: tokens (total, prompt, completion) and cost.

    `cost` is in the currency of `input_price` and `output_price`, the prices per million
    prompt and completion tokens, both required with it. At least one cap must be set; a
    negative, NaN or infinite cap or price raises `ConfigurationError` naming it. `name`
    identifies the budget in errors and, with Redis, across processes.

    >>> Budget(total_tokens=10_000).cost_of(1_000, 500)
    0.0
    >>> Budget(cost=5.0, input_price=0.15, output_price=0.60).cost_of(1_000_000, 500_000)
    0.45
    """

    total_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    input_price: float | None = None
    output_price: float | None = None
    name: str = "budget"

    def __post_init__(self) -> None:
        for spec in fields(self):
            if spec.name == "name":
                continue
            value = getattr(self, spec.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{spec.name}={value!r}: must be a number or None")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ConfigurationError(
                    f"invalid argument: {spec.name}={value!r}: must be a finite number, at least 0"
                )
            if spec.name.endswith("_tokens"):
                if value != int(value):
                    raise ConfigurationError(
                        f"invalid argument: {spec.name}={value!r}: must be a whole number"
                    )
                object.__setattr__(self, spec.name, int(value))
            else:
                object.__setattr__(self, spec.name, float(value))
        check_text("name", self.name)
        if all(getattr(self, cap) is None for cap in _CAPS):
            raise ConfigurationError(
                "invalid argument: Budget(): set at least one of " + ", ".join(_CAPS)
            )
        if self.cost is not None and (self.input_price is None or self.output_price is None):
            raise ConfigurationError(
                f"invalid argument: cost={self.cost!r}: needs input_price and output_price "
                "(per million prompt and completion tokens)"
            )

    @classmethod
    def parse(cls, spec: str, name: str = "budget") -> Budget:
        """A budget from text: a number (total tokens), or `key=value` pairs split by commas.

        >>> Budget.parse("50000")
        Budget(total_tokens=50000)
        >>> Budget.parse("cost=2.5,input_price=0.15,output_price=0.6").cost
        2.5
        """
        text = spec.strip()
        values: dict[str, Any] = {"name": name}
        known = [f.name for f in fields(cls)]
        try:
            if text and "=" not in text:
                values["total_tokens"] = _number(text)
            else:
                for part in filter(None, (p.strip() for p in text.split(","))):
                    key, _, value = part.partition("=")
                    key = key.strip().replace("-", "_")
                    if key not in known:
                        raise ValueError(f"unknown key {key!r} (known: {', '.join(known)})")
                    values[key] = value.strip() if key == "name" else _number(value)
        except ValueError as error:
            raise ConfigurationError(f"invalid budget {spec!r}: {error}") from None
        return cls(**values)

    def cost_of(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What these tokens cost at the budget's prices (0 without prices)."""
        return (
            prompt_tokens * (self.input_price or 0.0)
            + completion_tokens * (self.output_price or 0.0)
        ) / _MILLION

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)]
        shown = [s for s in shown if not s.endswith("=None") and s != "name='budget'"]
        return "Budget(" + ", ".join(shown) + ")"


def _number(text: str) -> float:  # an int when whole: errors show 5, not 5.0
    """`1e6`, `250000`, `2.5` (underscores allowed) as a number."""
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number") from None
    return int(value) if value.is_integer() else value


@dataclass(frozen=True, slots=True)
class BudgetSpent:
    """What a budget has spent (settled requests) and holds for requests in flight."""

    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    cost: float = 0.0
    reserved_tokens: float = 0.0  # estimates of the requests in flight
    reserved_cost: float = 0.0

    @property
    def total_tokens(self) -> float:
        """Prompt plus completion tokens spent."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Estimate:
    """One request's expected spend (or, once settled, its actual spend)."""

    prompt: float
    completion: float
    cost: float


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
        caps = ", ".join(f"{c} {getattr(b, c):g}" for c in _CAPS if getattr(b, c) is not None)
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
    from llmclient.limits.backends import REDIS_SCHEMES

    if url.partition("://")[0] not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"invalid argument: limits={url!r}: must be 'local' or a Redis URL"
        )
    try:
        from llmclient.limits.backends._redis_budget import RedisBudgetStore
    except ImportError as error:
        raise ConfigurationError(
            f"a budget in Redis needs the redis package: pip install 'llmclient[redis]' ({error})"
        ) from None
    prefix = getattr(limits, "prefix", "llmclient")
    return RedisBudgetStore(url, prefix, budget.name)


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


# ---------------------------------------------------------------- the hooks clients use
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
