"""A FIFO concurrency limiter whose limit can change while requests wait.

`asyncio.Semaphore` cannot shrink and belongs to one event loop; the adaptive limit needs to
shrink, and one process may run several loops (one per thread), so slots are counted here.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter:
    """At most `limit` holders at once, from any thread and event loop; waiters are served
    first come, first served.

    Lowering the limit never interrupts a holder: new holders are admitted only once the
    number in flight has dropped below the new limit. A slot handed to a waiter of another
    loop is counted at once and given back if that waiter was cancelled meanwhile.
    """

    __slots__ = ("_in_flight", "_limit", "_lock", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit={limit!r}: must be at least 1")
        self._limit = limit
        self._in_flight = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """How many holders are admitted at once."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        with self._lock:
            self._limit = max(1, value)
            self._wake()

    @property
    def in_flight(self) -> int:
        """How many hold a slot now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """How many wait for a slot now."""
        with self._lock:
            return sum(1 for _, waiter in self._waiters if not waiter.done())

    async def acquire(self) -> None:
        """Wait for a slot; cancellation while waiting leaves no slot taken."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_flight < self._limit and not self._waiters:
                self._in_flight += 1
                return
            waiter = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                handed = waiter.done() and not waiter.cancelled()
                if not handed and (loop, waiter) in self._waiters:
                    self._waiters.remove((loop, waiter))
            if handed:
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        """Give a slot back and admit the next waiter if the limit allows."""
        with self._lock:
            self._in_flight -= 1
            self._wake()

    def _wake(self) -> None:
        """Hand free slots to the first waiters (the lock is held)."""
        while self._waiters and self._in_flight < self._limit:
            loop, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._in_flight += 1
            if _running_loop() is loop:
                waiter.set_result(None)
                continue
            try:
                loop.call_soon_threadsafe(self._hand_over, waiter)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                self._in_flight -= 1

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        """In the waiter's own loop: give it the slot counted for it, or give the slot back."""
        if waiter.done():
            self.release()
        else:
            waiter.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
