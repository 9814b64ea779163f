"""Endpoint pools: several servers of one provider behind one client, each under its own limit.

`EndpointPool` (`pool_spec`) names the servers (and, if they differ, each one's
`max_concurrent`); `pool_member` holds a running server's state and its attempts' tickets.
`PoolDispatcher` admits each request to the healthy server with the most free capacity,
first come first served across the pool; a failing server is taken out and checked back.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from llmclient.errors import (
    LLMConnectionError,
    LLMError,
    RateLimitError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
)
from llmclient.limits.admission import EndpointTicket
from llmclient.limits.budget import RetryBudget
from llmclient.limits.endpoint import Endpoint
from llmclient.limits.pool_member import EndpointStats, PoolMember, PoolTicket
from llmclient.limits.pool_spec import EndpointPool

__all__ = ["EndpointPool", "EndpointStats", "PoolDispatcher", "PoolMember", "PoolTicket"]

logger = logging.getLogger("llmclient")
_MAX_PAUSE = 60.0  # longest Retry-After that keeps an endpoint out (the default max_server_wait)
_MAX_BACKOFF = 32  # most times `recheck_interval` between checks of a server that keeps failing
_RECHECK = 0.05  # seconds between looks for slots freed by other clients while requests wait


Ping = Callable[[PoolMember], Awaitable[None]]


class PoolDispatcher:
    """Admits requests to the servers of one pool, in one event loop.

    A request goes to the healthy server with the least in flight relative to its limit
    (ties: the most free slots). When none has a free slot, requests wait in one queue for
    the whole pool, and whichever server frees a slot first serves the oldest of them.
    When every server is out, waiting and new requests fail with an error naming each
    server and why it was taken out.
    """

    __slots__ = (
        "_closed",
        "_health_checks",
        "_ping",
        "_recheck",
        "_waiters",
        "budget",
        "max_pause",
        "members",
        "name",
        "provider",
        "spec",
    )

    def __init__(
        self,
        spec: EndpointPool,
        endpoints: Sequence[tuple[str, str, Endpoint]],
        ping: Ping,
        *,
        provider: str | None = None,
        budget: RetryBudget | None = None,
        max_pause: float = _MAX_PAUSE,
    ) -> None:
        """`endpoints` holds (url, name for messages, its `Endpoint`) per server, in order;
        `ping(member)` raises unless the server answers a cheap request; `max_pause` is the
        longest a Retry-After keeps one server out (the retry policy's `max_server_wait`)."""
        self.spec = spec
        self.members = [
            PoolMember(self, index, url, name, endpoint)
            for index, (url, name, endpoint) in enumerate(endpoints)
        ]
        self.name = ", ".join(member.name for member in self.members)
        self.provider = provider
        self.budget = budget if budget is not None else RetryBudget()
        self.max_pause = max_pause
        self._ping = ping
        self._waiters: deque[asyncio.Future[PoolMember]] = deque()
        self._health_checks: dict[PoolMember, asyncio.Task[None]] = {}
        self._recheck: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def concurrency_limit(self) -> int:
        """The pool's capacity now: the sum of its healthy servers' limits."""
        return sum(m.endpoint.concurrency_limit for m in self.members if m.healthy)

    @property
    def in_flight(self) -> int:
        """Requests on the wire to the pool's servers now."""
        return sum(member.endpoint.state.in_flight for member in self.members)

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot anywhere in the pool."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    # ------------------------------------------------------------------ admission
    async def admit(self, estimated_tokens: int, max_pause: float = math.inf) -> PoolTicket:
        """Wait for a slot on some server; return the ticket that names it (see `Admission`)."""
        member, (lease, charge) = await self.acquire(estimated_tokens)
        return PoolTicket(member, EndpointTicket(member.endpoint, lease, charge, max_pause))

    async def acquire(self, estimated_tokens: int) -> tuple[PoolMember, tuple[object, float]]:
        """Wait for a slot on some server; return it with that endpoint's lease and charge
        (give them back with the endpoint's `release`, then `finished`)."""
        member = None if self._waiters else self._pick()
        if member is None:
            member = await self._wait_turn()
        else:
            member.reserved += 1
        try:
            admitted = await member.endpoint.acquire(estimated_tokens)
        except BaseException:
            member.reserved -= 1
            self._dispatch()
            raise
        member.reserved -= 1
        return member, admitted

    def _pick(self) -> PoolMember | None:
        """The server with the least in flight for its limit among those with a free slot.

        A server that failed or refused within the last `recheck_interval` comes after the
        others, so the retry of a request it failed or refused goes elsewhere when there is room.
        """
        now = asyncio.get_running_loop().time()
        recent = now - self.spec.recheck_interval
        best: PoolMember | None = None
        best_key = (True, math.inf, 0)
        for member in self.members:
            free = member.free(now)
            if free <= 0:
                continue
            limit = member.endpoint.concurrency_limit
            key = (member.faulted_at > recent, (limit - free) / limit, -free)
            if key < best_key:
                best, best_key = member, key
        return best

    async def _wait_turn(self) -> PoolMember:
        if not any(member.healthy for member in self.members):
            raise self._all_down()
        waiter: asyncio.Future[PoolMember] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(_RECHECK, self._dispatch)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().reserved -= 1  # handed a slot just as we were cancelled
                self._dispatch()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _dispatch(self) -> None:
        """Hand free slots to the oldest waiters; fail them all when every server is out.

        Our own requests finishing call it; while requests still wait it also runs every
        `_RECHECK` seconds, for slots freed by other clients sharing a server (their releases
        do not come here) and for pauses that ended.
        """
        self._recheck = None
        waiters = self._waiters
        if waiters and not any(member.healthy for member in self.members):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(self._all_down())
            return
        while waiters:
            member = self._pick()
            if member is None:
                break
            waiter = waiters.popleft()
            if not waiter.done():
                member.reserved += 1
                waiter.set_result(member)
        if waiters and self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(_RECHECK, self._dispatch)

    # ------------------------------------------------------------------ outcomes
    def finished(
        self, member: PoolMember, error: LLMError | None, latency: float, cancelled: bool
    ) -> None:
        """Record how an attempt on `member` ended, update its health, hand its slot on."""
        if cancelled:
            pass
        elif error is None:
            member.answered += 1
            member.faults = member.refusals = 0
            member.latencies.append(latency)
            self.budget.on_success()
        else:
            member.failed += 1
            if error.retryable and not error.overload:
                self.budget.on_failure()
            self._judge(member, error)
        self._dispatch()

    def _judge(self, member: PoolMember, error: LLMError) -> None:
        if isinstance(error, LLMConnectionError):
            self._take_out(member, f"{error.kind}: {error.message}")
        elif isinstance(error, RequestTimeoutError):
            self._timed_out(member, error)
        elif isinstance(error, ServerError):
            member.faults += 1
            member.faulted_at = asyncio.get_running_loop().time()
            if member.faults >= self._allowed(member):
                self._take_out(member, _in_a_row(member.faults, error))
        elif isinstance(error, RateLimitError) and error.retry_after:
            self._hold(member, error.retry_after)
        elif isinstance(error, ServerBusyError | RateLimitError):
            if error.retry_after:  # a 503 may say when to come back too
                self._hold(member, error.retry_after)
            self._refused(member, error)

    def _allowed(self, member: PoolMember) -> int:
        """Failures in a row that take `member` out: one while on probation (back from a
        check and no request answered since), else `unhealthy_after`."""
        if member.returned is not None and member.returned == member.answered:
            return 1
        return self.spec.unhealthy_after

    def _hold(self, member: PoolMember, retry_after: float) -> None:
        """Give `member` no new request for `retry_after` seconds, at most `max_pause`."""
        resume_at = asyncio.get_running_loop().time() + min(retry_after, self.max_pause)
        member.resume_at = max(member.resume_at, resume_at)

    def _timed_out(self, member: PoolMember, error: LLMError) -> None:
        """Count a timeout: `unhealthy_after` of them with no answer between take `member`
        out, as a dead server is.

        A server that accepts requests and never answers holds all its slots, so its
        timeouts read as overload (or not, when a freed slot was not yet taken again as the
        next one expired): both kinds count in one run. A run that ends on an overload
        timeout takes it out only while another server is in.
        """
        count, since = member.timeouts
        if since != member.answered:  # it answered since the last one: a new run
            count, since = 0, member.answered
        run = count + 1
        member.timeouts = (run, since)
        member.faulted_at = asyncio.get_running_loop().time()
        if not error.overload:
            member.faults += 1  # a fault, as a 5xx is: it counts in their run too
            run = max(run, member.faults)
        if run < self._allowed(member):
            return
        if not error.overload or any(m.healthy for m in self.members if m is not member):
            self._take_out(member, _in_a_row(run, error))

    def _refused(self, member: PoolMember, error: LLMError) -> None:
        """Count a refusal; `unhealthy_after` in a row take `member` out while another is in.

        The last server in keeps serving: its refusals are back-pressure, retried as for one
        server, instead of failing every request at once.
        """
        member.refusals += 1
        member.faulted_at = asyncio.get_running_loop().time()
        others_in = any(m.healthy for m in self.members if m is not member)
        if member.refusals >= self._allowed(member) and others_in:
            self._take_out(member, _in_a_row(member.refusals, error), refusing=True)

    def _take_out(self, member: PoolMember, reason: str, refusing: bool = False) -> None:
        member.faults = member.refusals = 0
        member.timeouts = (0, member.answered)
        member.problem = member.reason = reason
        if not member.healthy:
            return
        member.healthy = False
        member.refusing = refusing
        if member.returned is not None and member.returned == member.answered:
            member.backoff = min(member.backoff * 2, _MAX_BACKOFF)  # failed its probation
        else:
            member.backoff = 1
        member.returned = None
        logger.warning(
            "%s: taken out of the pool (%s); checking it every %gs",
            member.name,
            reason,
            self.spec.recheck_interval * member.backoff,
        )
        if not self._closed and member not in self._health_checks:
            self._health_checks[member] = asyncio.get_running_loop().create_task(
                self._check_health(member)
            )
        if not any(m.healthy for m in self.members):  # the refusing ones are up: back in
            for other in self.members:
                if other.refusing:
                    self._take_back(other, "every other server is out")

    def _take_back(self, member: PoolMember, why: str, probation: bool = False) -> None:
        """Put `member` back in; on `probation` (a check let it in) one failure before its
        first answer takes it out again."""
        member.healthy = True
        member.refusing = False
        member.problem = member.reason = None
        member.faults = member.refusals = 0
        member.timeouts = (0, member.answered)
        member.returned = member.answered if probation else None
        logger.warning("%s: %s; back in the pool", member.name, why)
        self._dispatch()

    async def _check_health(self, member: PoolMember) -> None:
        """Ping `member` every `recheck_interval` seconds (times its backoff), never before its
        Retry-After has passed, until it answers; then take it back on probation.

        A listing answers on a server that is up but refusing (a busy Ollama answers
        `/api/tags`): its first request back is what shows it can take requests again.
        """
        loop = asyncio.get_running_loop()
        try:
            while not member.healthy:
                interval = self.spec.recheck_interval * member.backoff
                await asyncio.sleep(max(interval, member.resume_at - loop.time()))
                if member.healthy:  # taken back meanwhile
                    return
                try:
                    await self._ping(member)
                except Exception as error:  # any failure means: still down
                    member.problem = f"{member.reason}; last check: {_describe(error)}"
                    continue
                self._take_back(member, "answered a check", probation=True)
        finally:
            self._health_checks.pop(member, None)

    def _all_down(self) -> LLMConnectionError:
        reasons = "; ".join(f"{m.name}: {m.problem}" for m in self.members)
        return LLMConnectionError(
            f"every endpoint of the pool is out ({reasons})",
            provider=self.provider,
            endpoint=self.name,
            refused=True,
        )

    # ------------------------------------------------------------------ life
    def stats(self) -> dict[str, EndpointStats]:
        """Each server's health and counters, by URL (without credentials)."""
        return {member.name: member.stats() for member in self.members}

    async def aclose(self) -> None:
        """Stop checking the servers that are out."""
        self._closed = True
        if self._recheck is not None:
            self._recheck.cancel()
        checks = list(self._health_checks.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"PoolDispatcher({self.members!r})"


def _in_a_row(count: int, error: LLMError) -> str:
    """Why a server was taken out: `count` failures like `error` in a row."""
    status = f" (HTTP {error.status_code})" if error.status_code else ""
    return f"{count} {error.kind} in a row, the last{status}: {error.message}"


def _describe(error: BaseException) -> str:
    if isinstance(error, LLMError):
        return f"{error.kind}: {error.message}"
    return f"{type(error).__name__}: {error}"
