"""The workers: `amap` maps an async function over many items with a bounded set of workers
pulling items lazily, and yields each outcome in completion order."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sized,
)
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from llmclient._checks import check_int
from llmclient.errors import BudgetExceededError
from llmclient.fanout.sizing import sized_owner, worker_count
from llmclient.limits.spending import Budget, BudgetTracker, under_budget

__all__ = ["amap"]

T = TypeVar("T")
R = TypeVar("R")

# Named before the package was: logging configurations and the docs refer to this name.
logger = logging.getLogger("llmclient.mapping")


class _Workers(Generic[T, R]):
    """One run of ``coro_fn`` over ``items``: up to ``n_workers`` workers and their
    outcomes. An input without a len() starts one worker, then one more per item pulled.

    Used as ``async with workers: async for index, outcome in workers`` (or ``next_batch()``).
    Finished outcomes wait in ``_buffer`` in completion order; a worker that leaves
    ``pause_at`` (None: ``n_workers``) or more of them there pauses until the consumer has
    taken enough. The first failure (``return_exceptions=False``) cancels the other workers
    and is raised to the consumer after the outcomes finished before it, except a
    `BudgetExceededError`: the calls in flight then finish first (their requests are paid
    for), no new one starts, and it is raised after their outcomes. Leaving the block cancels
    every worker. With a ``budget`` every call's requests count against it, and once it is
    spent the items not started end with its `BudgetExceededError` without a call.
    """

    __slots__ = (
        "_budget_stop",
        "_buffer",
        "_exhausted",
        "_fn",
        "_given_pause_at",
        "_items",
        "_live",
        "_lock",
        "_pause_at",
        "_paused",
        "_pulled",
        "_ready",
        "_return_exceptions",
        "_sized_by",
        "_source",
        "_space",
        "_tg",
        "_to_start",
        "_workers",
        "budget",
        "error",
        "failed",
        "n_workers",
        "total",
    )

    def __init__(
        self,
        coro_fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        max_concurrent: int | None,
        return_exceptions: bool,
        pause_at: int | None,
        budget: Budget | BudgetTracker | None = None,
    ) -> None:
        _check_args(coro_fn, items, max_concurrent)
        if isinstance(budget, Budget):
            budget = BudgetTracker(budget)
        elif budget is not None and not isinstance(budget, BudgetTracker):
            raise TypeError(f"budget={budget!r}: must be a Budget, a BudgetTracker or None")
        self.budget = budget
        self._budget_stop: BaseException | None = None  # raised once the calls in flight end
        self._fn = coro_fn if budget is None else under_budget(budget, coro_fn)
        self._items = items
        self._return_exceptions = return_exceptions
        self.total = len(items) if isinstance(items, Sized) else None
        # Sized to the client's limit: asked again once its servers said what they take.
        self._sized_by = sized_owner(coro_fn) if max_concurrent is None else None
        if max_concurrent is None:
            max_concurrent = worker_count(self._sized_by)
        self._given_pause_at = pause_at
        self._size(max_concurrent)
        self._buffer: deque[tuple[int, R | BaseException]] = deque()
        self._ready: asyncio.Future[None] | None = None  # the consumer waits on it
        self._space = asyncio.Event()  # paused workers wait on it
        self._paused = 0
        self._live = 0  # workers not ended yet
        self._lock = asyncio.Lock()  # an async iterator cannot be advanced by two workers
        self._exhausted = False
        self._pulled = 0  # items pulled from an async iterator
        self._tg: asyncio.TaskGroup | None = None
        self._source: Iterator[tuple[int, T]] | AsyncIterator[T] | None = None
        self._to_start = 0  # workers not started yet: one more starts per item pulled
        self._workers: list[asyncio.Task[None]] = []
        self.error: BaseException | None = None  # the first failure, once the run stops
        self.failed: set[int] = set()  # indices whose outcome is an exception raised

    @property
    def errors(self) -> int:
        """Calls failed so far (and the error that stopped the run, if any)."""
        return len(self.failed) + (self.error is not None)

    @property
    def busy(self) -> int:
        """Workers calling ``coro_fn`` or pulling an item (not paused, not ended)."""
        return self._live - self._paused

    def _size(self, limit: int) -> None:
        self.n_workers = limit if self.total is None else max(1, min(limit, self.total))
        pause_at = self._given_pause_at
        self._pause_at = self.n_workers if pause_at is None else pause_at

    async def __aenter__(self) -> _Workers[T, R]:
        if self._tg is not None:
            raise RuntimeError("an amap() run runs once: call amap() again for another run")
        if self._sized_by is not None:
            try:
                workers = await self._sized_by.discover_limits()
            except Exception as exc:  # a closed client: each call reports it
                logger.debug("could not ask the client's servers what they take: %r", exc)
            else:
                self._size(workers)
        items = self._items
        self._source = aiter(items) if isinstance(items, AsyncIterable) else enumerate(items)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        # A sized input starts its workers at once (no more than its items); any other input
        # one at a time as items arrive, so a huge limit never means a huge set of workers.
        self._to_start = self.n_workers
        for _ in range(self.n_workers if self.total is not None else 1):
            self._start_worker()
        return self

    def _start_worker(self) -> None:
        assert self._tg is not None and self._source is not None
        self._to_start -= 1
        self._live += 1
        task = self._tg.create_task(self._worker(self._source))
        task.add_done_callback(self._worker_done)
        self._workers.append(task)

    async def __aexit__(self, *exc_info: object) -> None:
        """Cancel the workers still running and wait for them; the body's error propagates."""
        self._to_start = 0
        for task in self._workers:
            task.cancel()
        assert self._tg is not None
        # Not given the body's error, which it would wrap in an ExceptionGroup.
        await self._tg.__aexit__(None, None, None)

    def __aiter__(self) -> _Workers[T, R]:
        return self

    async def __anext__(self) -> tuple[int, R | BaseException]:
        if not self._buffer and not await self._wait():
            raise StopAsyncIteration
        pair = self._buffer.popleft()
        self._unpause()
        return pair

    async def next_batch(self) -> deque[tuple[int, R | BaseException]]:
        """Every outcome finished since the last call, waiting for one; empty at the end."""
        if not self._buffer and not await self._wait():
            return self._buffer
        batch, self._buffer = self._buffer, deque()
        self._unpause()
        return batch

    async def _wait(self) -> bool:
        """Wait for an outcome: False once all are taken; the first failure is raised."""
        while not self._buffer:
            if self.error is not None:
                raise self.error
            if not self._live:
                return False
            self._ready = asyncio.get_running_loop().create_future()
            await self._ready
        return True

    def _wake(self) -> None:
        """Let the consumer run: an outcome arrived, the run failed or a worker ended."""
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _unpause(self) -> None:
        if self._paused and len(self._buffer) < self._pause_at:
            self._space.set()
            self._space.clear()

    async def _pause(self) -> None:
        """Wait until the consumer has taken enough outcomes (a slow consumer holds us back)."""
        self._paused += 1
        try:
            while len(self._buffer) >= self._pause_at:
                await self._space.wait()
        finally:
            self._paused -= 1

    async def _worker(self, source: Iterator[tuple[int, T]] | AsyncIterator[T]) -> None:
        """Call ``coro_fn`` on items from ``source`` until it is exhausted or the run stops.

        Never raises to the task group (which would cancel the consumer's task and, on Python
        3.11, leave its cancelling() count raised): a failure cancels the other workers.
        """
        me = asyncio.current_task()
        assert me is not None
        fn = self._fn
        try:
            if isinstance(source, AsyncIterator):
                while (pulled := await self._pull(source)) is not None:
                    if not await self._call(me, *pulled):
                        return
            else:
                for i, item in source:  # the hot path: no coroutine of ours per item
                    if self._to_start:
                        self._start_worker()
                    try:
                        outcome: R | BaseException = await fn(item)
                    except (Exception, asyncio.CancelledError) as exc:
                        if not self._failure(me, i, exc):
                            return
                        outcome = exc
                    if self._put(i, outcome):
                        await self._pause()
        except (Exception, asyncio.CancelledError) as exc:
            self._ended(me, exc)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._live -= 1
        if not self._live:
            if self._budget_stop is not None and self.error is None:
                self.error = self._budget_stop
            self._wake()

    async def _pull(self, source: AsyncIterator[T]) -> tuple[int, T] | None:
        """The next item of an async iterator with its index, or None once it is exhausted."""
        async with self._lock:
            if self._exhausted:
                return None
            try:
                item = await anext(source)
            except StopAsyncIteration:
                self._exhausted = True
                return None
            self._pulled += 1
            if self._to_start:
                self._start_worker()
            return self._pulled - 1, item

    async def _call(self, me: asyncio.Task[None], i: int, item: T) -> bool:
        """Await one call and buffer its outcome; False when the run must stop."""
        try:
            outcome: R | BaseException = await self._fn(item)
        except (Exception, asyncio.CancelledError) as exc:
            if not self._failure(me, i, exc):
                return False
            outcome = exc
        if self._put(i, outcome):
            await self._pause()
        return True

    def _failure(self, me: asyncio.Task[None], i: int, exc: BaseException) -> bool:
        """A call failed: True when its exception is the outcome, False when the run stops."""
        if me.cancelling():  # this worker is being cancelled, not just the call
            raise exc
        if not self._return_exceptions:
            if isinstance(exc, BudgetExceededError):  # the calls in flight finish first
                if self._budget_stop is None:
                    self._budget_stop = exc
                self._to_start = 0
                return False
            self._stop(exc, me)
            return False
        self.failed.add(i)
        return True

    def _put(self, i: int, outcome: R | BaseException) -> bool:
        """Buffer an outcome for the consumer; True when the worker must pause."""
        buffer = self._buffer
        buffer.append((i, outcome))
        if self._ready is not None:
            self._wake()
        return len(buffer) >= self._pause_at

    def _stop(self, exc: BaseException, me: asyncio.Task[None]) -> None:
        """End the run on its first failure: keep the error, cancel the other workers."""
        if self.error is None:
            self.error = exc
        self._to_start = 0
        for task in self._workers:
            if task is not me:
                task.cancel()
        self._wake()

    def _ended(self, me: asyncio.Task[None], exc: Exception | asyncio.CancelledError) -> None:
        """Handle an error from the items, or the worker's own cancellation (re-raised)."""
        if not me.cancelling():
            self._stop(exc, me)
        elif isinstance(exc, Exception):  # a call or the source failed while being cancelled
            logger.debug("error while cancelling a worker: %r", exc)
            raise asyncio.CancelledError() from exc
        else:
            raise exc


def _check_args(coro_fn: object, items: object, max_concurrent: object) -> None:
    if not callable(coro_fn):
        raise TypeError(f"coro_fn must be callable, got {coro_fn!r}")
    if not isinstance(items, Iterable | AsyncIterable):
        raise TypeError(f"items must be an iterable or async iterable, got {type(items).__name__}")
    check_int("max_concurrent", max_concurrent, 1, optional=True)


def amap(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_concurrent: int | None = None,
    return_exceptions: bool = False,
) -> AbstractAsyncContextManager[AsyncIterator[tuple[int, R | BaseException]]]:
    """``(index, outcome)`` for every item as its call finishes, in completion order::

        async with amap(fetch, urls, max_concurrent=8) as outcomes:
            async for index, page in outcomes:
                ...

    Workers (``max_concurrent``; by default the client's ``max_workers`` when
    ``coro_fn`` is a client's method, else ``DEFAULT_MAX_WORKERS``; no more than
    ``len(items)`` for sized inputs; other inputs start one worker, then one more per item
    pulled) pulls items lazily from any iterable, generator or
    async iterable. A worker whose outcome the consumer has not taken yet pulls nothing new,
    so at most one finished outcome per worker waits for a slow consumer.

    With ``return_exceptions=False`` the first failure cancels the calls in flight and is
    raised by the iteration, after the outcomes finished before it; with True a failed item's
    outcome is its exception. A CancelledError raised by ``coro_fn`` counts as that item's
    failure; an error raised by ``items`` ends the run and is raised. Leaving the block,
    early or on an error, cancels the calls still running and waits for them.
    """
    return _Workers(coro_fn, items, max_concurrent, return_exceptions, pause_at=1)
