"""Limits shared by every process and machine that uses the same Redis: `limits="redis://..."`.

Each request holds a lease in a sorted set per endpoint; a heartbeat renews the leases of
live requests, so a crashed process's slots come back after one lease time. Waiters queue in
arrival order across processes; a release grants the freed slot to the first in line in the
same script call and tells only its process (pub/sub), and waiters are re-sent now and then in
case a message was lost or a lease ran out. rpm/tpm buckets and the pause live in Redis too;
`"auto"` is steered by one process at a time (the leader) from the samples of all. Needs the
`redis` extra. The parts: `_redis_space` (an endpoint's keys, outages, pause, buckets),
`_redis_conn` (the pipelined connection), `_redis_queue` (the line), `_redis_fleet` (the leader).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Hashable
from typing import Literal
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from llmclient._checks import check_number, check_text
from llmclient.errors import ConfigurationError
from llmclient.limits.algorithms import FixedLimit, Limit
from llmclient.limits.backends._redis_fleet import FleetLimit
from llmclient.limits.backends._redis_space import Space
from llmclient.limits.backends.base import REDIS_SCHEMES, public_url
from llmclient.limits.concurrency import ConcurrencyLimiter

__all__ = ["FleetLimit", "RedisBackend", "RedisState"]

OnError = Literal["wait", "fail"]


class RedisBackend:
    """Keeps every endpoint's slots, buckets, pause and adaptive limit in one Redis.

    `lease` is how long a slot outlives its holder's last heartbeat (a crashed process's slots
    return after it). When Redis cannot be reached, `on_error="wait"` holds requests for up to
    `wait_timeout` seconds before failing (`math.inf`: until Redis is back); `"fail"` fails
    them at once. Either way the error names the Redis URL; there is never a silent fallback
    to per-process limits. Every setting is checked here: a bad one raises
    `ConfigurationError` (`TypeError` for a wrong type) before any request.
    """

    __slots__ = ("__weakref__", "_spaces", "lease", "on_error", "prefix", "url", "wait_timeout")

    def __init__(
        self,
        url: str,
        *,
        lease: float = 5.0,
        on_error: OnError = "wait",
        wait_timeout: float = 30.0,
        prefix: str = "llmclient",
    ) -> None:
        _check_url(url)
        check_number("lease", lease, 0.05, finite=True)
        check_number("wait_timeout", wait_timeout, 0, above=True)
        check_text("prefix", prefix)
        if on_error not in ("wait", "fail"):
            raise ConfigurationError(
                f"invalid argument: on_error={on_error!r}: must be 'wait' or 'fail'"
            )
        self.url, self.lease, self.on_error = url, float(lease), on_error
        self.wait_timeout, self.prefix = float(wait_timeout), prefix
        self._spaces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Space]]
        self._spaces = weakref.WeakKeyDictionary()

    def _settings(self) -> tuple[object, ...]:
        return (self.url, self.lease, self.on_error, self.wait_timeout, self.prefix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RedisBackend) and self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash(self._settings())

    def __repr__(self) -> str:
        url, lease, on_error = public_url(self.url), self.lease, self.on_error
        return f"RedisBackend({url!r}, lease={lease}, on_error={on_error!r})"

    def state(self, key: Hashable, limit: int, rpm: float | None, tpm: int | None) -> RedisState:
        """The shared state of `key`'s endpoint, for this event loop."""
        return RedisState(self._space(key), limit, rpm, tpm)

    def share(self, key: Hashable, limit: Limit) -> Limit:
        """Fixed limits as they are; any other limit steered fleet-wide (`FleetLimit`)."""
        if isinstance(limit, FixedLimit):
            return limit
        return FleetLimit(limit, self._space(key).leader)

    def _space(self, key: Hashable) -> Space:
        spaces = self._spaces.setdefault(asyncio.get_running_loop(), {})
        space = spaces.get(key)
        if space is None:
            space = spaces[key] = Space(self, _key_text(key))
        return space


def _check_url(url: object) -> None:
    """`url` is a Redis URL redis-py can connect with (checked before any request is made)."""
    if not isinstance(url, str):
        raise TypeError(f"limits={url!r}: must be a str")
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"invalid argument: limits={public_url(url)!r}: "
            "must be redis://, rediss:// or unix:// (or 'local')"
        )
    try:
        db = urlsplit(url).path.strip("/")
        if scheme != "unix" and db and not db.isdigit():
            raise ValueError(f"database {db!r} is not a number")
        ConnectionPool.from_url(url).make_connection()  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, RedisError) as error:
        raise ConfigurationError(
            f"invalid argument: limits={public_url(url)!r}: not a valid Redis URL ({error})"
        ) from None


def _key_text(key: Hashable) -> str:
    """An endpoint key as Redis key text (its parts are an origin and an account hash)."""
    parts = key if isinstance(key, tuple) else (key,)
    return "|".join(str(part) for part in parts)


class RedisState:
    """An endpoint's admission state as one process sees it, kept in Redis."""

    __slots__ = ("_contending", "_limit", "_local", "_space", "rpm", "tpm")

    def __init__(self, space: Space, limit: int, rpm: float | None, tpm: int | None) -> None:
        self._space = space
        self._limit = limit
        # This process never asks Redis for more slots at once than the limit.
        self._local = ConcurrencyLimiter(limit)
        self._contending = 0
        self.rpm, self.tpm = rpm, tpm

    @property
    def in_flight(self) -> int:
        """Slots held by the whole fleet, as last read from Redis."""
        return self._space.queue.fleet_held

    @property
    def waiting(self) -> int:
        """Requests of this process waiting for a slot now."""
        return self._local.waiting + self._contending

    @property
    def rates_active(self) -> bool:
        """Whether an rpm or tpm limit is set."""
        return bool(self.rpm or self.tpm)

    async def acquire_slot(self) -> str:
        """Wait for a slot in Redis: requests of all processes in arrival order.

        At most `limit` requests of this process stand in Redis's line or hold a slot; the
        others wait here. A release grants the freed slot to the first in line in the same
        script call, and only that request's process is told.
        """
        queue = self._space.queue
        await self._local.acquire()
        holder = queue.holder()
        self._contending += 1
        try:
            await queue.acquire(holder, self._limit)
        except BaseException:
            queue.release(holder)  # a slot granted as we were cancelled, or our place in line
            self._local.release()
            raise
        finally:
            self._contending -= 1
        return holder

    def release_slot(self, lease: object) -> None:
        """Give the slot back (sent in the background; the lease expires anyway)."""
        queue = self._space.queue
        queue.release(str(lease))
        queue.fleet_held = max(0, queue.fleet_held - 1)
        self._local.release()

    def set_limit(self, limit: int) -> None:
        """Ask for at most `limit` slots fleet-wide from now on."""
        self._limit = limit
        self._local.limit = limit
        self._space.queue.relimit(limit)

    def set_rates(self, rpm: float | None, tpm: int | None) -> None:
        """Use these rpm and tpm limits from now on."""
        self.rpm, self.tpm = rpm, tpm

    async def reserve(self, tokens: float) -> float:
        """Reserve one request and `tokens` in the shared buckets; wait for the reservation."""
        charge = min(max(tokens, 0.0), float(self.tpm)) if self.tpm else 0.0
        wait_ms = await self._space.reserve(self.rpm, self.tpm, charge)
        if wait_ms > 0:
            try:
                await asyncio.sleep(wait_ms / 1000)
            except asyncio.CancelledError:
                self._refund(charge)
                raise
        return charge

    def _refund(self, charge: float) -> None:
        if self.rpm:
            self._space.adjust("rpm", self.rpm, -1)
        if self.tpm and charge:
            self._space.adjust("tpm", self.tpm, -charge)

    def settle(self, charged: float, used: int) -> None:
        """Correct the tpm charge with the reported usage (debt allowed)."""
        if self.tpm:
            self._space.adjust("tpm", self.tpm, used - charged)

    async def paused_for(self) -> float:
        """Seconds left of a pause any process set (read at most every 50 ms)."""
        return await self._space.paused_for()

    def pause_left(self) -> None:
        """Unknown without asking Redis: the endpoint awaits `paused_for`."""
        return None

    def pause(self, seconds: float) -> None:
        """Pause the endpoint for every process."""
        self._space.pause(seconds)

    async def aclose(self) -> None:
        """Close this loop's connection to Redis if no request of it holds a slot."""
        await self._space.aclose()
