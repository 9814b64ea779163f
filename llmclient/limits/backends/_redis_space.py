"""One endpoint's keys in Redis and this event loop's connection to them: the background work
(the pipelined connection, the fleet's line, the leader), the pause and rpm/tpm buckets, and
what happens while Redis cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.typing import EncodableT

from llmclient.errors import LimitsUnavailableError
from llmclient.limits.backends import _lua
from llmclient.limits.backends._redis_conn import DOWN, Batch, Call, Pipe
from llmclient.limits.backends._redis_fleet import Leader
from llmclient.limits.backends._redis_queue import Queue
from llmclient.limits.backends.base import public_url

if TYPE_CHECKING:
    from llmclient.limits.backends.redis import RedisBackend

__all__ = ["Space"]

logger = logging.getLogger("llmclient")
T = TypeVar("T")
_SCRIPTS = ("SLOTS", "PAUSE", "RESERVE", "SETTLE", "LEAD")


class Space:
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
        self.scripts = {name: self.redis.register_script(getattr(_lua, name)) for name in _SCRIPTS}
        self.lease_ms = max(1, round(backend.lease * 1000))
        self.idle_ms = max(600_000, 10 * self.lease_ms)
        self.recheck = min(1.0, backend.lease / 4)
        self.me = uuid.uuid4().hex[:12]
        self.channel = self.grants + self.me
        self.pause_until = 0.0  # time.monotonic() deadline, as last seen
        self.pause_seen = -math.inf
        self._writes: list[Call] = []
        self._outage: float | None = None
        self._pause_read: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.pipe, self.queue, self.leader = Pipe(self), Queue(self), Leader(self)
        self._start()

    def _start(self) -> None:
        self.pipe.reset()
        self.closed = asyncio.Event()  # loops end on it even if a cancellation got lost
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
        if task is None or self.queue.held or self.queue.waiters:
            return
        self._task = None
        self.closed.set()
        self.pipe.kick.set()
        task.cancel()
        await asyncio.wait([task], timeout=3.0)

    async def _run(self) -> None:
        pipe, queue = self.pipe, self.queue
        loops = (pipe.writer, pipe.reader, queue.heartbeat, queue.listen, self.leader.lead)
        tasks = [asyncio.ensure_future(loop()) for loop in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.closed.set()
            pipe.kick.set()
            for task in tasks:
                task.cancel()
            # The loop is ending: give back what we hold, close, and never hang the shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await asyncio.wait(tasks)
                    await pipe.flush()
                    await pipe.aclose()
                    await self.redis.aclose()

    async def nap(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the space is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), seconds)

    # ------------------------------------------------------------------ Redis down or up
    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()` against Redis; while Redis is down, wait or fail as configured."""
        self.running()
        delay = 0.05
        while True:
            try:
                result = await make()
            except DOWN as error:
                waited = self._down(error)
                if self.backend.on_error == "fail" or waited >= self.backend.wait_timeout:
                    raise self._unavailable(error, waited) from None
                await asyncio.sleep(min(delay, self.backend.wait_timeout - waited))
                delay = min(delay * 2, 1.0)
            else:
                self._up()
                return result

    def failed(self, error: BaseException) -> None:
        """A batch failed: fail the waiters if so configured, and retry after a backoff."""
        waited = self._down(error)
        backend = self.backend
        if backend.on_error == "fail" or waited >= backend.wait_timeout:
            self.queue.fail(self._unavailable(error, waited))
        self.pipe.back_off(backend.wait_timeout - waited)

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

    def _unavailable(self, error: BaseException, waited: float) -> LimitsUnavailableError:
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

    # ------------------------------------------------------------------ batches
    def take(self) -> Batch | None:
        """Everything pending, as one batch: one `SLOTS` call, writes and samples."""
        batch = Batch()
        slots = self.queue.take(batch)
        batch.calls, self._writes = self._writes, []
        if slots is not None:
            batch.calls.insert(0, slots)
        samples = self.leader.take()
        if not (batch.calls or samples):
            return None
        self.pipe.pack(batch, samples)
        return batch

    def requeue(self, batch: Batch, calls: list[Call]) -> None:
        """Send `calls` of `batch` again with the next batch (a restarted Redis drops the first
        write on the old connection)."""
        for call in calls:
            if call[0] != "SLOTS":
                self._writes.append(call)
            else:
                self.queue.requeue(batch)
        self.pipe.kick.set()

    def landed(self, slots: list[Any] | None) -> None:
        """A batch got its replies; act on its `SLOTS` reply: the fleet limit, pause, grants."""
        self._up()
        if slots is not None:
            held, pause_ms, fleet, *mine = slots
            self.leader.limit = int(fleet) or self.leader.limit
            self.saw_pause(int(pause_ms))
            self.queue.granted(mine, int(held))

    def write(self, script: str, keys: list[str], args: list[EncodableT]) -> None:
        """Call `script` with the next batch (a write nobody waits for)."""
        self.running()
        self._writes.append((script, keys, args))
        self.pipe.kick.set()

    # ------------------------------------------------------------------ pause and buckets
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

    def pause(self, seconds: float) -> None:
        now = time.monotonic()
        self.pause_until = max(self.pause_until, now + seconds)
        self.write("PAUSE", [self.keys["pause"]], [max(1, round(seconds * 1000))])

    async def reserve(self, rpm: float | None, tpm: int | None, tokens: float) -> int:
        k = self.keys
        args = [rpm or 0, (rpm or 0) / 60_000, tpm or 0, (tpm or 0) / 60_000, tokens, self.idle_ms]
        wait_ms: int = await self.call(
            lambda: self.scripts["RESERVE"](keys=[k["rpm"], k["tpm"]], args=args)
        )
        return wait_ms

    def adjust(self, bucket: str, per_minute: float, delta: float) -> None:
        self.write("SETTLE", [self.keys[bucket]], [per_minute / 60_000, delta, self.idle_ms])


def _retrieve(done: asyncio.Future[None]) -> None:
    """Mark a shared read's error as seen (its askers may all have gone)."""
    if not done.cancelled():
        done.exception()
