"""Limits shared by every process and machine that uses the same Redis: `limits="redis://..."`.

Each request holds a lease in a sorted set per endpoint; a heartbeat renews the leases of
live requests, so a crashed process's slots come back after one lease time. Waiters queue in
arrival order across processes; a release grants the freed slot to the first in line in the
same script call and tells only its process (pub/sub), and waiters are re-sent now and then in
case a message was lost or a lease ran out. rpm/tpm buckets and the pause live in Redis too;
`"auto"` is steered by one process at a time (the leader) from the samples of all. Needs the
`redis` extra.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from llmclient._checks import check_number, check_text
from llmclient.errors import ConfigurationError, LimitsUnavailableError
from llmclient.limits.algorithms import FixedLimit, Limit, Outcome
from llmclient.limits.backends import _lua
from llmclient.limits.backends.base import REDIS_SCHEMES, public_url
from llmclient.limits.concurrency import ConcurrencyLimiter

__all__ = ["FleetLimit", "RedisBackend", "RedisState"]

logger = logging.getLogger("llmclient")
T = TypeVar("T")
OnError = Literal["wait", "fail"]
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_SAMPLES_KEPT = 10_000
_MAX_FLIGHTS = 4  # batches sent whose replies are not read yet


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
        self._spaces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Space]]
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
        return FleetLimit(limit, self._space(key))

    def _space(self, key: Hashable) -> _Space:
        spaces = self._spaces.setdefault(asyncio.get_running_loop(), {})
        space = spaces.get(key)
        if space is None:
            space = spaces[key] = _Space(self, _key_text(key))
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


class _Batch:
    """Work sent to Redis in one write: script calls (a `SLOTS` call first, if any), samples."""

    __slots__ = ("calls", "count", "enters", "packed", "releases", "renew", "sync")

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], list[EncodableT]]] = []
        self.releases: list[str] = []
        self.enters: dict[str, int] = {}
        self.sync = self.renew = False
        self.packed, self.count = b"", 0


class _Space:
    """One endpoint's keys in Redis and this event loop's connection to them.

    All slot traffic of the loop (new waiters, releases, renewals) goes out through one
    writer task, batched into one `SLOTS` script call per round trip; grants made by other
    processes' calls arrive on this process's own pub/sub channel.
    """

    def __init__(self, backend: RedisBackend, endpoint: str) -> None:
        self.backend = backend
        base = f"{backend.prefix}:{{{endpoint}}}:"
        names = ("slots", "queue", "wexp", "seq", "conf", "pause", "wait")
        self.keys = {name: base + name for name in (*names, "rpm", "tpm", "samples")}
        self.slot_keys = [self.keys[name] for name in names]
        self.leader_key, self.grants = base + "leader", base + "granted:"
        self.redis: Redis = Redis.from_url(
            backend.url, socket_connect_timeout=2.0, socket_timeout=5.0, retry=Retry(NoBackoff(), 1)
        )
        self.scripts = {
            name: self.redis.register_script(getattr(_lua, name))
            for name in ("SLOTS", "PAUSE", "RESERVE", "SETTLE", "LEAD")
        }
        self.lease_ms = max(1, round(backend.lease * 1000))
        self.idle_ms = max(600_000, 10 * self.lease_ms)
        self.recheck = min(1.0, backend.lease / 4)
        self.me = uuid.uuid4().hex[:12]
        self.channel = self.grants + self.me
        self._numbers = itertools.count()
        self.held: set[str] = set()
        self.waiters: dict[str, tuple[int, asyncio.Future[None]]] = {}  # holder -> limit, grant
        self.fleet_held = 0
        self.fleet_limit: int | None = None
        self.steering: Limit | None = None  # the inner limit of a FleetLimit
        self.pause_until = 0.0  # time.monotonic() deadline, as last seen
        self.pause_seen = -math.inf
        self._enters: dict[str, int] = {}  # waiters not yet sent, with their limits
        self._releases: list[str] = []
        self._sync_due = False  # send every waiter again (a safety net for lost grants)
        self._renew_due = False
        self._samples: list[str] = []
        self._writes: list[tuple[str, list[str], list[EncodableT]]] = []
        self._outage: float | None = None
        pool = self.redis.connection_pool
        self._conn: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        self._heads: dict[tuple[str, ...], bytes] = {}
        self._pause_read: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._start()

    def _start(self) -> None:
        self._flights: collections.deque[_Batch] = collections.deque()  # sent, replies unread
        self._sent, self._landed = asyncio.Event(), asyncio.Event()
        self._retry_at, self._delay = 0.0, 0.05
        self._kick = asyncio.Event()
        self._closed = asyncio.Event()  # loops end on it even if a cancellation got lost
        self._task = asyncio.get_running_loop().create_task(self._run())

    def running(self) -> None:
        """Start the background work again if `aclose()` stopped it."""
        if self._task is None:
            self._start()

    async def aclose(self) -> None:
        """Stop the background work, send pending releases, close the connection.

        Only when nothing of this loop holds or waits for a slot (their heartbeat must go on);
        any later use starts it again.
        """
        task = self._task
        if task is None or self.held or self.waiters:
            return
        self._task = None
        self._closed.set()
        self._kick.set()
        task.cancel()
        await asyncio.wait([task], timeout=3.0)

    # ------------------------------------------------------------------ calls that wait
    def holder(self) -> str:
        return f"{self.me}:{next(self._numbers)}"

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()` against Redis; while Redis is down, wait or fail as configured."""
        self.running()
        delay = 0.05
        while True:
            try:
                result = await make()
            except _DOWN as error:
                waited = self._down(error)
                if self.backend.on_error == "fail" or waited >= self.backend.wait_timeout:
                    raise self.unavailable(error, waited) from None
                await asyncio.sleep(min(delay, self.backend.wait_timeout - waited))
                delay = min(delay * 2, 1.0)
            else:
                self._up()
                return result

    def _down(self, error: BaseException) -> float:
        """Note that Redis failed us (logged once per outage); return how long it has been."""
        now = time.monotonic()
        if self._outage is None:
            self._outage = now
            logger.warning(
                "shared limits: cannot reach Redis at %s (%s); requests %s",
                public_url(self.backend.url),
                error,
                "fail" if self.backend.on_error == "fail" else "wait",
            )
        return now - self._outage

    def _up(self) -> None:
        if self._outage is not None:
            logger.warning("shared limits: Redis at %s is back", public_url(self.backend.url))
            self._outage = None

    def unavailable(self, error: BaseException, waited: float) -> LimitsUnavailableError:
        backend = self.backend
        how = (
            "on_backend_error='fail'"
            if backend.on_error == "fail"
            else f"waited {waited:.1f}s of wait_timeout={backend.wait_timeout:g}s"
        )
        return LimitsUnavailableError(
            f"shared limits unavailable: cannot reach Redis at {public_url(backend.url)} "
            f"({type(error).__name__}: {error}); {how}"
        )

    async def acquire(self, holder: str, limit: int) -> None:
        """Stand in the fleet's line as `holder` until granted a slot."""
        self.running()
        grant = asyncio.get_running_loop().create_future()
        self.waiters[holder] = (limit, grant)
        self._enters[holder] = limit
        self._kick.set()
        try:
            await grant
        finally:
            self.waiters.pop(holder, None)
            self._enters.pop(holder, None)

    def relimit(self, limit: int) -> None:
        """Ask for at most `limit` slots for the waiters of this loop from now on."""
        for holder, (_, grant) in list(self.waiters.items()):
            self.waiters[holder] = (limit, grant)
            if holder in self._enters:
                self._enters[holder] = limit
        if self.waiters:
            self._sync_due = True
            self._kick.set()

    def _granted(self, holders: list[Any], held: int) -> None:
        self.fleet_held = held
        for raw in holders:
            holder = raw.decode() if isinstance(raw, bytes) else str(raw)
            _, grant = self.waiters.pop(holder, (0, None))
            if grant is not None and not grant.done():
                self.held.add(holder)
                grant.set_result(None)

    def saw_pause(self, pause_ms: int) -> None:
        now = time.monotonic()
        self.pause_seen = now
        self.pause_until = max(self.pause_until, now + pause_ms / 1000)

    async def paused_for(self) -> float:
        """Seconds left of the pause; read from Redis if not seen for 50 ms (one read at a
        time, however many requests ask)."""
        if time.monotonic() - self.pause_seen > 0.05:
            reading = self._pause_read
            if reading is None or reading.done():
                reading = self._pause_read = asyncio.ensure_future(self._read_pause())
                reading.add_done_callback(_retrieve)
            await asyncio.shield(reading)
        return max(0.0, self.pause_until - time.monotonic())

    async def _read_pause(self) -> None:
        self.saw_pause(max(0, await self.call(lambda: self.redis.pttl(self.keys["pause"]))))

    async def reserve(self, rpm: float | None, tpm: int | None, tokens: float) -> int:
        k = self.keys
        args = [rpm or 0, (rpm or 0) / 60_000, tpm or 0, (tpm or 0) / 60_000, tokens, self.idle_ms]
        wait_ms: int = await self.call(
            lambda: self.scripts["RESERVE"](keys=[k["rpm"], k["tpm"]], args=args)
        )
        return wait_ms

    # ------------------------------------------------------------------ writes that never wait
    def release(self, holder: str) -> None:
        self.running()
        self.held.discard(holder)
        self._enters.pop(holder, None)
        self._releases.append(holder)
        self._kick.set()

    def adjust(self, bucket: str, per_minute: float, delta: float) -> None:
        self._write("SETTLE", [self.keys[bucket]], [per_minute / 60_000, delta, self.idle_ms])

    def pause(self, seconds: float) -> None:
        now = time.monotonic()
        self.pause_until = max(self.pause_until, now + seconds)
        self._write("PAUSE", [self.keys["pause"]], [max(1, round(seconds * 1000))])

    def sample(self, rtt: float, in_flight: int, outcome: Outcome) -> None:
        self.running()
        self._samples.append(f"{rtt:.6f} {in_flight} {outcome.value}")
        self._kick.set()

    def _write(self, script: str, keys: list[str], args: list[EncodableT]) -> None:
        self.running()
        self._writes.append((script, keys, args))
        self._kick.set()

    def sync(self) -> None:
        """Send every waiter of this loop again: picks up grants whose message was lost and
        slots whose lease ran out, and puts waiters back in line after a Redis restart."""
        if self.waiters:
            self._sync_due = True
            self._kick.set()

    # ------------------------------------------------------------------ background work
    async def _run(self) -> None:
        loops = [self._writer(), self._reader(), self._heartbeat(), self._listen(), self._lead()]
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            self._closed.set()
            self._kick.set()
            for task in tasks:
                task.cancel()
            # The loop is ending: give back what we hold, close, and never hang the shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await asyncio.wait(tasks)
                    await self._flush()
                    await self._conn.disconnect()
                    await self.redis.aclose()

    async def _nap(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the space is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    async def _writer(self) -> None:
        """Send pending work as soon as there is some: a batch does not wait for the replies
        to earlier ones (`_reader` takes those in order), so a release never queues behind a
        round trip."""
        while not self._closed.is_set():
            await self._kick.wait()
            self._kick.clear()
            await asyncio.sleep(0)  # requests that are ready now join this batch
            backoff = self._retry_at - time.monotonic()
            if backoff > 0:
                await self._nap(backoff)
            if len(self._flights) >= _MAX_FLIGHTS:
                self._landed.clear()
                await self._landed.wait()
                self._kick.set()
                continue
            batch = self._take()
            if batch is None:
                continue
            try:
                await self._conn.send_packed_command(batch.packed, check_health=False)
            except Exception as error:
                _reraise_cancel(error)
                await self._conn.disconnect()
                self._requeue(batch, batch.calls)
                self._failed(error)
            else:
                self._flights.append(batch)
                self._sent.set()

    async def _reader(self) -> None:
        """Read the replies of the batches sent, in order, and act on them."""
        conn = self._conn
        while not self._closed.is_set():
            if not self._flights:
                self._sent.clear()
                await self._sent.wait()
                continue
            batch = self._flights[0]
            replies: list[Any] = []
            try:
                for _ in range(batch.count):
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as error:
                        replies.append(error)
            except Exception as error:  # all in flight are sent again
                _reraise_cancel(error)
                await conn.disconnect()
                flights, self._flights = list(self._flights), collections.deque()
                for lost in flights:
                    self._requeue(lost, lost.calls)
                self._landed.set()
                self._failed(error)
                continue
            self._flights.popleft()
            self._landed.set()
            try:
                await self._land(batch, replies)
            except Exception as error:
                _reraise_cancel(error)
                self._failed(error)

    def _take(self) -> _Batch | None:
        """Everything pending, as one batch: one `SLOTS` call, writes and samples."""
        batch = _Batch()
        batch.releases, self._releases = self._releases, []
        batch.enters, self._enters = self._enters, {}
        batch.sync, batch.renew = self._sync_due, self._renew_due
        self._sync_due = self._renew_due = False
        if batch.sync:
            batch.enters = {holder: limit for holder, (limit, _) in self.waiters.items()}
        renewals = list(self.held) if batch.renew else []
        samples, self._samples = self._samples, []
        batch.calls = list(self._writes)
        self._writes = []
        if batch.releases or batch.enters or renewals or batch.sync:
            args: list[EncodableT] = [self.me, self.grants, self.lease_ms, self.idle_ms]
            args += [len(batch.releases), *batch.releases, len(renewals), *renewals]
            for holder, limit in batch.enters.items():
                args += [holder, limit]
            batch.calls.insert(0, ("SLOTS", self.slot_keys, args))
        if not (batch.calls or samples):
            return None
        packed = [self._evalsha(*call) for call in batch.calls]
        if samples:
            k = self.keys["samples"]
            packed.append(_pack(("RPUSH", k, *samples)))
            packed.append(_pack(("LTRIM", k, -_SAMPLES_KEPT, -1)))
            packed.append(_pack(("PEXPIRE", k, self.idle_ms)))
        batch.packed, batch.count = b"".join(packed), len(packed)
        return batch

    def _requeue(self, batch: _Batch, calls: list[tuple[str, list[str], list[EncodableT]]]) -> None:
        """Send `calls` of `batch` again with the next batch (a restarted Redis drops the first
        write on the old connection); releases, renewals and entering the line are idempotent."""
        for call in calls:
            if call[0] != "SLOTS":
                self._writes.append(call)
            else:
                self._releases[:0] = batch.releases
                for holder, limit in batch.enters.items():
                    if holder in self.waiters:
                        self._enters.setdefault(holder, limit)
                self._sync_due |= batch.sync
                self._renew_due |= batch.renew
        self._kick.set()

    def _failed(self, error: BaseException) -> None:
        """Redis failed us: fail the waiters if so configured, and retry after a backoff."""
        waited = self._down(error)
        backend = self.backend
        if backend.on_error == "fail" or waited >= backend.wait_timeout:
            failure = self.unavailable(error, waited)
            for _, grant in self.waiters.values():
                if not grant.done():
                    grant.set_exception(failure)
        delay = min(self._delay, max(0.01, backend.wait_timeout - waited))
        self._retry_at = time.monotonic() + delay
        self._delay = min(self._delay * 2, 1.0)
        self._kick.set()

    async def _land(self, batch: _Batch, replies: list[Any]) -> None:
        """Act on a batch's replies: grants, the pause and the fleet limit from `SLOTS`;
        scripts Redis does not know (after a restart) are loaded and their calls sent again."""
        missing = []
        for call, reply in zip(batch.calls, replies, strict=False):
            if isinstance(reply, NoScriptError):
                missing.append(call)
            elif isinstance(reply, Exception):
                self._requeue(batch, [call])
                raise reply
        if missing:
            for name in {call[0] for call in missing}:
                self.scripts[name].sha = await self.redis.script_load(self.scripts[name].script)
            self._heads.clear()
            self._requeue(batch, missing)
        self._delay = 0.05
        self._up()
        if batch.calls and batch.calls[0][0] == "SLOTS" and batch.calls[0] not in missing:
            held, pause_ms, fleet, *mine = replies[0]
            self.fleet_limit = int(fleet) or self.fleet_limit
            self.saw_pause(int(pause_ms))
            self._granted(mine, int(held))

    async def _flush(self) -> None:
        """Send what is pending and wait for its replies (the loop is ending)."""
        await self._conn.disconnect()  # replies to batches in flight are not read
        self._flights.clear()
        batch = self._take()
        if batch is not None:
            await self._conn.send_packed_command(batch.packed, check_health=False)
            for _ in range(batch.count):
                with contextlib.suppress(ResponseError):
                    await self._conn.read_response()

    def _evalsha(self, name: str, keys: list[str], args: list[EncodableT]) -> bytes:
        """EVALSHA of script `name`, packed; the part up to the keys is packed once."""
        sha = self.scripts[name].sha
        head = self._heads.get((sha, *keys))
        if head is None:
            head = self._heads[(sha, *keys)] = _bulk(("EVALSHA", sha, len(keys), *keys))
        return b"*%d\r\n%s%s" % (3 + len(keys) + len(args), head, _bulk(args))

    async def _heartbeat(self) -> None:
        """Renew held leases and re-send waiters every `recheck` seconds (< lease / 3)."""
        while not self._closed.is_set():
            await self._nap(self.recheck)
            if self.held:
                self._renew_due = True
                self._kick.set()
            self.sync()

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            while not self._closed.is_set():
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self.channel)
                    message = await pubsub.get_message(timeout=self.recheck)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.sync()  # grants sent before we listened
                    elif message["type"] == "message":
                        held, pause_ms, *holders = message["data"].split()
                        self.saw_pause(int(pause_ms))
                        self._granted(holders, int(held))
                except _DOWN as error:
                    _reraise_cancel(error)
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                    await self._nap(self.recheck)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _lead(self) -> None:
        """While a fleet limit exists, steer it when holding the leader lease, else follow it."""
        published: int | None = None
        while not self._closed.is_set():
            await self._nap(0.2)
            steering = self.steering
            if steering is None:
                continue
            try:
                lead = self.scripts["LEAD"]
                if await lead(keys=[self.leader_key], args=[self.me, self.lease_ms]):
                    published = await self._steer(steering, published)
                else:
                    published = None
                    value = await self.redis.hget(self.keys["conf"], "limit")
                    self.fleet_limit = int(value) if value else None
            except _DOWN as error:
                _reraise_cancel(error)

    async def _steer(self, steering: Limit, published: int | None) -> int:
        raw = await self.redis.lpop(self.keys["samples"], _SAMPLES_KEPT) or []
        for line in raw if isinstance(raw, list) else [raw]:
            rtt, in_flight, outcome = (line.decode() if isinstance(line, bytes) else line).split()
            steering.on_sample(float(rtt), int(in_flight), Outcome(outcome))
        limit = steering.limit
        self.fleet_limit = limit
        if limit != published:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.keys["conf"], "limit", limit)
                pipe.pexpire(self.keys["conf"], self.idle_ms)
                await pipe.execute()
            logger.debug("shared limits: fleet concurrency limit now %d", limit)
            self._sync_due = True  # a SLOTS call grants what a higher limit frees
            self._kick.set()
        return limit


def _bulk(args: tuple[EncodableT, ...] | list[EncodableT]) -> bytes:
    """`args` as Redis protocol (RESP) bulk strings."""
    out: list[bytes] = []
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _pack(command: tuple[EncodableT, ...]) -> bytes:
    """One command in the Redis protocol, ready to send."""
    return b"*%d\r\n%s" % (len(command), _bulk(command))


def _retrieve(done: asyncio.Future[None]) -> None:
    """Mark a shared read's error as seen (its askers may all have gone)."""
    if not done.cancelled():
        done.exception()


def _reraise_cancel(error: BaseException) -> None:
    """Raise `CancelledError` if this task is being cancelled and the Redis client turned the
    cancellation into another error: a background loop must never outlive its event loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error


class RedisState:
    """An endpoint's admission state as one process sees it, kept in Redis."""

    __slots__ = ("_contending", "_limit", "_local", "_space", "rpm", "tpm")

    def __init__(self, space: _Space, limit: int, rpm: float | None, tpm: int | None) -> None:
        self._space = space
        self._limit = limit
        # This process never asks Redis for more slots at once than the limit.
        self._local = ConcurrencyLimiter(limit)
        self._contending = 0
        self.rpm, self.tpm = rpm, tpm

    @property
    def in_flight(self) -> int:
        """Slots held by the whole fleet, as last read from Redis."""
        return self._space.fleet_held

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
        space = self._space
        await self._local.acquire()
        holder = space.holder()
        self._contending += 1
        try:
            await space.acquire(holder, self._limit)
        except BaseException:
            space.release(holder)  # a slot granted as we were cancelled, or our place in line
            self._local.release()
            raise
        finally:
            self._contending -= 1
        return holder

    def release_slot(self, lease: object) -> None:
        """Give the slot back (sent in the background; the lease expires anyway)."""
        space = self._space
        space.release(str(lease))
        space.fleet_held = max(0, space.fleet_held - 1)
        self._local.release()

    def set_limit(self, limit: int) -> None:
        """Ask for at most `limit` slots fleet-wide from now on."""
        self._limit = limit
        self._local.limit = limit
        self._space.relimit(limit)

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

    def pause(self, seconds: float) -> None:
        """Pause the endpoint for every process."""
        self._space.pause(seconds)

    async def aclose(self) -> None:
        """Close this loop's connection to Redis if no request of it holds a slot."""
        await self._space.aclose()


class FleetLimit:
    """A limit algorithm run for the whole fleet: one process (the leader) feeds it everyone's
    samples and publishes its limit; every process admits by the published limit."""

    __slots__ = ("_space", "inner")

    def __init__(self, inner: Limit, space: _Space) -> None:
        self.inner = inner
        self._space = space
        space.steering = inner

    @property
    def limit(self) -> int:
        """The fleet's limit as last published (the inner limit's until then)."""
        fleet = self._space.fleet_limit
        return min(fleet, self.inner.max_limit) if fleet else self.inner.limit

    @property
    def max_limit(self) -> int:
        """The inner limit's ceiling."""
        return self.inner.max_limit

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        """Send the sample to the leader; return the limit in force."""
        self._space.sample(rtt, in_flight, outcome)
        return self.limit

    def __repr__(self) -> str:
        return f"FleetLimit({self.inner!r}, limit={self.limit})"
