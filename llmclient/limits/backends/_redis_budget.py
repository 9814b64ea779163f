"""A budget's count in Redis, shared by every process that uses the same budget name there.

Reserving and settling are one Lua script call each (`BUDGET_RESERVE`, `BUDGET_SETTLE`), so
two processes can never both take the last room under a cap. A reservation carries a lease
that a heartbeat renews while its request runs (`BUDGET_RENEW`, every third of the lease): if
its process dies, it stops counting as held after `lease` seconds. The keys expire `ttl`
seconds after the budget's last use. When Redis cannot be reached, `on_error="wait"` tries
again (with backoff) for up to `wait_timeout` seconds, as shared limits do; `"fail"` raises
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

from llmclient._loop_local import LoopLocal
from llmclient.errors import LimitsUnavailableError
from llmclient.limits._spend_caps import Budget, BudgetSpent, Estimate
from llmclient.limits._spend_tracker import Reserved
from llmclient.limits.backends._lua import BUDGET_RENEW, BUDGET_RESERVE, BUDGET_SETTLE
from llmclient.limits.backends.base import public_url

__all__ = ["RedisBudgetStore"]

_IDS = itertools.count()
logger = logging.getLogger("llmclient")


class _Conn:
    """One event loop's connection, scripts, live reservations and heartbeat."""

    __slots__ = ("heartbeat", "live", "redis", "renew", "reserve", "settle")

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.reserve = self.redis.register_script(BUDGET_RESERVE)
        self.settle = self.redis.register_script(BUDGET_SETTLE)
        self.renew = self.redis.register_script(BUDGET_RENEW)
        self.live: set[str] = set()
        self.heartbeat: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop the heartbeat and close the connection, in its own loop."""
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat
        await self.redis.aclose()


class RedisBudgetStore:
    """The count of budget `name` in the Redis at `url` (keys under `<prefix>:budget:`)."""

    __slots__ = ("_clients", "keys", "lease", "on_error", "ttl", "url", "wait_timeout")
    poll = 0.05  # seconds between two checks while other processes' requests hold the rest

    def __init__(
        self,
        url: str,
        prefix: str,
        name: str,
        lease: float = 30.0,
        ttl: float = 7 * 86400.0,
        *,
        on_error: Literal["wait", "fail"] = "wait",
        wait_timeout: float = 30.0,
    ) -> None:
        self.url, self.lease, self.ttl = url, lease, ttl
        self.on_error, self.wait_timeout = on_error, wait_timeout
        base = f"{prefix}:budget:{{{name}}}:"
        self.keys = [base + "spent", base + "held", base + "holds"]
        self._clients = LoopLocal(partial(_Conn, url), _Conn.close)

    def _conn(self) -> _Conn:
        return self._clients.get()

    async def _beat(self, conn: _Conn) -> None:
        """Renew this loop's live reservations every third of the lease (cancelled when none
        is left)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await conn.renew(keys=[self.keys[1]], args=[int(self.lease * 1000), *conn.live])
            except (RedisError, OSError) as error:  # the next beat tries again
                logger.debug("budget: could not renew reservations: %r", error)

    async def reserve(self, budget: Budget, estimate: Estimate) -> Reserved:
        """Reserve `estimate` in Redis if it fits every cap of `budget`."""
        conn = self._conn()
        holder = f"{os.getpid()}:{id(self):x}:{next(_IDS)}"
        caps: list[float] = [
            -1 if cap is None else cap
            for cap in (budget.total_tokens, budget.prompt_tokens, budget.completion_tokens)
        ]
        caps.append(-1 if budget.cost is None else budget.cost)
        args = [*caps, estimate.prompt, estimate.completion, estimate.cost, holder]
        args += [int(self.lease * 1000), int(self.ttl)]
        reply = await self._call(partial(conn.reserve, keys=self.keys, args=list(map(_text, args))))
        ok, prompt, completion, cost, reserved, reserved_cost = reply
        spent = BudgetSpent(
            float(prompt), float(completion), float(cost), float(reserved), float(reserved_cost)
        )
        if not int(ok):
            return None, spent
        conn.live.add(holder)
        if conn.heartbeat is None:
            conn.heartbeat = asyncio.get_running_loop().create_task(self._beat(conn))
        return holder, spent

    async def settle(self, reservation: object, estimate: Estimate, actual: Estimate) -> None:
        """Drop the reservation and count what the request spent."""
        conn = self._conn()
        conn.live.discard(str(reservation))
        if not conn.live and conn.heartbeat is not None:
            conn.heartbeat.cancel()  # nothing left to renew
            conn.heartbeat = None
        args = [reservation, actual.prompt, actual.completion, actual.cost, int(self.ttl)]
        await self._call(partial(conn.settle, keys=self.keys, args=list(map(_text, args))))

    async def spent(self) -> BudgetSpent:
        """The count in Redis now."""
        redis = self._conn().redis
        names = ("prompt", "completion", "cost", "rprompt", "rcompletion", "rcost")
        values = await self._call(partial(redis.hmget, self.keys[0], names))
        p, c, k, rp, rc, rk = (max(0.0, float(v or 0)) for v in values)
        return BudgetSpent(p, c, k, rp + rc, rk)

    async def aclose(self) -> None:
        """Close this event loop's connection."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        await self._clients.aclose()

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`, tried again while Redis cannot be reached for up to `wait_timeout`
        seconds under `on_error="wait"`; LimitsUnavailableError when it gives up."""
        if self.on_error == "fail":
            try:
                return await call()
            except (RedisError, OSError) as error:
                raise self._unavailable(error) from None
        limit = self.wait_timeout
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((RedisError, OSError)),
            stop=stop_never if limit == float("inf") else stop_after_delay(limit),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
            before_sleep=self._warn,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except RetryError as gave_up:
            last = gave_up.last_attempt.exception() or OSError("no answer")
            raise self._unavailable(last, waited=limit) from None

    def _warn(self, state: RetryCallState) -> None:
        if state.attempt_number == 1:
            error = state.outcome.exception() if state.outcome else None
            logger.warning(
                "budget: cannot reach Redis at %s (%s); requests wait up to %gs",
                public_url(self.url),
                error,
                self.wait_timeout,
            )

    def _unavailable(
        self, error: BaseException, waited: float | None = None
    ) -> LimitsUnavailableError:
        how = "on_backend_error='fail'" if waited is None else f"waited wait_timeout={waited:g}s"
        return LimitsUnavailableError(
            f"budget unavailable: cannot reach Redis at {public_url(self.url)} "
            f"({type(error).__name__}: {error}); {how}"
        )


def _text(value: object) -> str:
    """A script argument: floats written in full (repr), everything else as str."""
    return repr(value) if isinstance(value, float) else str(value)
