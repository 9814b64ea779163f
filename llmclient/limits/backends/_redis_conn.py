"""The pipelined connection of one endpoint's space: batches of packed commands written as soon
as there is work, without waiting for the replies to earlier ones, whose replies are read in
order. What goes into a batch and what its replies mean is the space's business."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

if TYPE_CHECKING:
    from llmclient.limits.backends._redis_space import Space

__all__ = ["DOWN", "Batch", "Call", "Pipe", "reraise_cancel"]

DOWN = (RedisConnectionError, RedisTimeoutError, OSError)  # Redis cannot be reached
Call = tuple[str, list[str], list[EncodableT]]  # a script's name, its keys, its arguments
_MAX_FLIGHTS = 4  # batches sent whose replies are not read yet


class Batch:
    """Work sent to Redis in one write: script calls (a `SLOTS` call first, if any), samples."""

    __slots__ = ("calls", "count", "enters", "packed", "releases", "renew", "sync")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.releases: list[str] = []
        self.enters: dict[str, int] = {}
        self.sync = self.renew = False
        self.packed, self.count = b"", 0


class Pipe:
    """One connection that `writer` sends batches on and `reader` reads their replies from;
    scripts Redis does not know (after a restart) are loaded and their calls sent again."""

    def __init__(self, space: Space) -> None:
        self.space = space
        pool = space.redis.connection_pool
        self._conn: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        self._heads: dict[tuple[str, ...], bytes] = {}
        self.reset()

    def reset(self) -> None:
        """Fresh state for a new run of the background work."""
        self._flights: collections.deque[Batch] = collections.deque()  # sent, replies unread
        self._sent, self._landed = asyncio.Event(), asyncio.Event()
        self._retry_at, self._delay = 0.0, 0.05
        self.kick = asyncio.Event()  # there is work to send

    def pack(self, batch: Batch, commands: list[tuple[EncodableT, ...]]) -> None:
        """Pack `batch`'s script calls, then `commands`, as one write."""
        packed = [self._evalsha(*call) for call in batch.calls]
        packed += [_pack(command) for command in commands]
        batch.packed, batch.count = b"".join(packed), len(packed)

    def back_off(self, most: float) -> None:
        """Send nothing for a while after a failure (doubling up to 1 s, at most `most` s)."""
        delay = min(self._delay, max(0.01, most))
        self._retry_at = time.monotonic() + delay
        self._delay = min(self._delay * 2, 1.0)
        self.kick.set()

    async def writer(self) -> None:
        """Send pending work as soon as there is some: a batch does not wait for the replies
        to earlier ones (`reader` takes those in order), so a release never queues behind a
        round trip."""
        space = self.space
        while not space.closed.is_set():
            await self.kick.wait()
            self.kick.clear()
            await asyncio.sleep(0)  # requests that are ready now join this batch
            backoff = self._retry_at - time.monotonic()
            if backoff > 0:
                await space.nap(backoff)
            if len(self._flights) >= _MAX_FLIGHTS:
                self._landed.clear()
                await self._landed.wait()
                self.kick.set()
                continue
            batch = space.take()
            if batch is None:
                continue
            try:
                await self._conn.send_packed_command(batch.packed, check_health=False)
            except Exception as error:
                reraise_cancel(error)
                await self._conn.disconnect()
                space.requeue(batch, batch.calls)
                space.failed(error)
            else:
                self._flights.append(batch)
                self._sent.set()

    async def reader(self) -> None:
        """Read the replies of the batches sent, in order, and act on them."""
        conn, space = self._conn, self.space
        while not space.closed.is_set():
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
                reraise_cancel(error)
                await conn.disconnect()
                flights, self._flights = list(self._flights), collections.deque()
                for lost in flights:
                    space.requeue(lost, lost.calls)
                self._landed.set()
                space.failed(error)
                continue
            self._flights.popleft()
            self._landed.set()
            try:
                await self._land(batch, replies)
            except Exception as error:
                reraise_cancel(error)
                space.failed(error)

    async def _land(self, batch: Batch, replies: list[Any]) -> None:
        """Load missing scripts and send their calls again; hand the `SLOTS` reply on."""
        missing = []
        for call, reply in zip(batch.calls, replies, strict=False):
            if isinstance(reply, NoScriptError):
                missing.append(call)
            elif isinstance(reply, Exception):
                self.space.requeue(batch, [call])
                raise reply
        if missing:
            scripts = self.space.scripts
            for name in {call[0] for call in missing}:
                scripts[name].sha = await self.space.redis.script_load(scripts[name].script)
            self._heads.clear()
            self.space.requeue(batch, missing)
        self._delay = 0.05
        slots = batch.calls and batch.calls[0][0] == "SLOTS" and batch.calls[0] not in missing
        self.space.landed(replies[0] if slots else None)

    async def flush(self) -> None:
        """Send what is pending and wait for its replies (the loop is ending); replies to
        batches in flight are not read."""
        await self._conn.disconnect()
        self._flights.clear()
        batch = self.space.take()
        if batch is not None:
            await self._conn.send_packed_command(batch.packed, check_health=False)
            for _ in range(batch.count):
                with contextlib.suppress(ResponseError):
                    await self._conn.read_response()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._conn.disconnect()

    def _evalsha(self, name: str, keys: list[str], args: list[EncodableT]) -> bytes:
        """EVALSHA of script `name`, packed; the part up to the keys is packed once."""
        sha = self.space.scripts[name].sha
        head = self._heads.get((sha, *keys))
        if head is None:
            head = self._heads[(sha, *keys)] = _bulk(("EVALSHA", sha, len(keys), *keys))
        return b"*%d\r\n%s%s" % (3 + len(keys) + len(args), head, _bulk(args))


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


def reraise_cancel(error: BaseException) -> None:
    """Raise `CancelledError` if this task is being cancelled and the Redis client turned the
    cancellation into another error: a background loop must never outlive its event loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error
