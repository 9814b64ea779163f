"""Coalescing of many small embedding calls into few provider requests.

Inputs from every caller within `max_wait` seconds are sent together, up to `batch_size` per
request; each caller gets back its own vectors, and a failed request fails only its callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["EmbeddingCoalescer"]

Vector = list[float]
SendBatch = Callable[[list[str]], Awaitable[list[Vector]]]


class EmbeddingCoalescer:
    """Gathers texts from concurrent callers and sends them in batches through `send`."""

    __slots__ = ("_pending", "_tasks", "_timer", "batch_size", "max_wait", "send")

    def __init__(self, send: SendBatch, batch_size: int, max_wait: float) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: must be at least 1")
        if max_wait < 0:
            raise ValueError(f"max_wait={max_wait!r}: must not be negative")
        self.send = send
        self.batch_size = batch_size
        self.max_wait = max_wait
        self._pending: list[tuple[str, asyncio.Future[Vector]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """The vectors of `texts`, in order, sent together with other callers' texts."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self._pending.extend(zip(texts, futures, strict=True))
        while len(self._pending) >= self.batch_size:
            self._dispatch(self.batch_size)
        if self._pending and self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._dispatch_due)
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:
                future.cancel()  # this caller's inputs not yet sent leave their batch
            raise

    async def aclose(self) -> None:
        """Send what is pending and wait for every request under way."""
        while self._pending:
            self._dispatch(self.batch_size)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _dispatch_due(self) -> None:
        self._timer = None
        while self._pending:
            self._dispatch(self.batch_size)

    def _dispatch(self, size: int) -> None:
        batch, self._pending = self._pending[:size], self._pending[size:]
        if not self._pending and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        live = [(text, future) for text, future in batch if not future.done()]
        if live:
            task = asyncio.get_running_loop().create_task(self._send(live))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
        try:
            vectors = await self.send([text for text, _ in batch])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), vector in zip(batch, vectors, strict=True):
            if not future.done():
                future.set_result(vector)
