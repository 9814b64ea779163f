"""A FIFO concurrency limiter whose limit can change while requests wait.

`asyncio.Semaphore` cannot shrink; the adaptive limit needs to, so slots are counted here.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter:
    """At most `limit` holders at once; waiters are served first come, first served.

    Lowering the limit never interrupts a holder: new holders are admitted only once the
    number in flight has dropped below the new limit.
    """

    __slots__ = ("_in_flight", "_limit", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit={limit!r}: must be at least 1")
        self._limit = limit
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        """How many holders are admitted at once."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = max(1, value)
        self._wake()

    @property
    def in_flight(self) -> int:
        """How many hold a slot now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """How many wait for a slot now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> None:
        """Wait for a slot; cancellation while waiting leaves no slot taken."""
        if self._in_flight < self._limit and not self._waiters:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:  # a release may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back and admit the next waiter if the limit allows."""
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)
