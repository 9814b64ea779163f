"""The simulated server's slots and their FIFO wait queue.

`parallel` slots are Ollama's `OLLAMA_NUM_PARALLEL`; `max_queue` bounds the waiting requests
(`OLLAMA_MAX_QUEUE`; None waits without bound), beyond which the answer is 503 busy.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from . import _protocols as proto
from ._reply import Reply, ServerStats


class Slots:
    """Requests served at once: at most `parallel`, the others waiting in FIFO order."""

    def __init__(self, parallel: int, max_queue: int | None, stats: ServerStats) -> None:
        self._free = parallel
        self._max_queue = max_queue
        self._stats = stats
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, reply: Reply) -> float | None:
        """Take a slot, waiting in FIFO order; returns the seconds waited, None if answered busy."""
        st = self._stats
        if self._free and not self._waiters:
            self._free -= 1
            waited = 0.0
        elif self._max_queue is not None and len(self._waiters) >= self._max_queue:
            await reply.error(503, proto.BUSY_MESSAGE, type_="api_error")
            return None
        else:
            start = time.monotonic()
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            st.waiting += 1
            st.peak_waiting = max(st.peak_waiting, st.waiting)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._hand_over()  # the slot reached us as we were cancelled: pass it on
                elif fut in self._waiters:
                    self._waiters.remove(fut)
                raise
            finally:
                st.waiting -= 1
            waited = time.monotonic() - start
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        return waited

    def release(self) -> None:
        self._stats.in_flight -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Give a free slot to the first live waiter, or back to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
