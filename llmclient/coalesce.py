"""Micro-batching: items from concurrent callers gathered into batches by size or by time.

A batch is dispatched when it holds `batch_size` items or `max_wait` seconds after its first
item arrived; a handler resolves each item's future. `send_together` makes the handler for
providers that take a whole batch in one request (embeddings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["BatchHandler", "MicroBatcher", "send_together"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
BatchHandler = Callable[[list[tuple[I, "asyncio.Future[O]"]]], Coroutine[Any, Any, None]]


class MicroBatcher(Generic[I, O]):
    """Gathers items from concurrent callers and hands them to `handler` in batches."""

    __slots__ = ("_pending", "_tasks", "_timer", "batch_size", "handler", "max_wait")

    def __init__(self, handler: BatchHandler[I, O], batch_size: int, max_wait: float) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: must be at least 1")
        if max_wait < 0:
            raise ValueError(f"max_wait={max_wait!r}: must not be negative")
        self.handler = handler
        self.batch_size = batch_size
        self.max_wait = max_wait
        self._pending: list[tuple[I, asyncio.Future[O]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Items waiting for their batch to be dispatched."""
        return len(self._pending)

    async def submit(self, items: Sequence[I]) -> list[O]:
        """The outcomes of `items`, in order; a caller cancelled leaves its items' batch."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[O]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        while len(self._pending) >= self.batch_size:
            self._dispatch()
        if self._pending and self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._dispatch_all)
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    async def flush(self) -> None:
        """Dispatch everything pending now and wait for every batch under way."""
        self._dispatch_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _dispatch_all(self) -> None:
        while self._pending:
            self._dispatch()

    def _dispatch(self) -> None:
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        if not self._pending and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        live = [(item, future) for item, future in batch if not future.done()]
        if live:
            task = asyncio.get_running_loop().create_task(self.handler(live))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def send_together(send: Callable[[list[I]], Awaitable[list[O]]]) -> BatchHandler[I, O]:
    """A handler that sends the whole batch in one call; its failure fails the whole batch."""

    async def handle(batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        try:
            outcomes = await send([item for item, _ in batch])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    return handle
