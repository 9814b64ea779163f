"""Map an async function over many items with a bounded pool of workers pulling items lazily.

Owns the pool (`amap`: outcomes in completion order) and what is built on it: `run_concurrent`
(results in input order, progress, log lines), `run_concurrent_sync` and `iterate_concurrent`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sized,
)
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast, overload

from llmclient._checks import check_int

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "ProgressCallback",
    "amap",
    "iterate_concurrent",
    "run_concurrent",
    "run_concurrent_sync",
]

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("llmclient.mapping")

DEFAULT_MAX_WORKERS = 256
"""Worker count when ``max_concurrent`` is None.

Not a server limit (that is the client's own concurrency limit); it only stops the pool from
turning into one task per item.
"""

_PROGRESS_INTERVAL = 0.1
"""Minimum seconds between two progress updates (tqdm's ``mininterval``, or callback calls)."""


class ProgressCallback(Protocol):
    """Gradio-style progress sink, called as ``progress(fraction, desc=description)``.

    ``fraction`` is ``done / total`` when the total is known, else the Gradio tuple
    ``(done, None)``. Called once at the start, then at most every 0.1 s as items complete;
    the last call of a successful run is always ``1.0``.
    """

    def __call__(self, progress: float | tuple[int, None], /, *, desc: str) -> object: ...


# --- the pool -------------------------------------------------------------------------------


class _Pool(Generic[T, R]):
    """One run of ``coro_fn`` over ``items``: a pool of up to ``n_workers`` workers and their
    outcomes. An input without a len() starts one worker, then one more per item pulled.

    Used as ``async with pool: async for index, outcome in pool`` (or ``next_batch()``).
    Finished outcomes wait in ``_buffer`` in completion order; a worker that leaves
    ``pause_at`` (None: ``n_workers``) or more of them there pauses until the consumer has
    taken enough. The first failure (``return_exceptions=False``) cancels the other workers
    and is raised to the consumer after the outcomes finished before it. Leaving the block
    cancels every worker.
    """

    __slots__ = (
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
    ) -> None:
        _check_pool_args(coro_fn, items, max_concurrent)
        self._fn = coro_fn
        self._items = items
        self._return_exceptions = return_exceptions
        self.total = len(items) if isinstance(items, Sized) else None
        # Sized to the client's limit: asked again once its servers said what they take.
        self._sized_by = _client_of(coro_fn) if max_concurrent is None else None
        if max_concurrent is None:
            max_concurrent = client_workers(coro_fn) or DEFAULT_MAX_WORKERS
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

    async def __aenter__(self) -> _Pool[T, R]:
        if self._tg is not None:
            raise RuntimeError("a pool runs once: call amap() again for another run")
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
        # one at a time as items arrive, so a huge limit never means a huge pool.
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

    def __aiter__(self) -> _Pool[T, R]:
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


class _SizedClient(Protocol):
    async def discover_limits(self) -> int: ...


def _owner(coro_fn: Callable[..., object]) -> object:
    """The object a bound method (or a partial of one) belongs to; None for a function."""
    target = coro_fn.func if isinstance(coro_fn, functools.partial) else coro_fn
    return getattr(target, "__self__", None)


def _client_of(coro_fn: Callable[..., object]) -> _SizedClient | None:
    """The client a bound method (or a partial of one) belongs to, if it can say its size."""
    client = _owner(coro_fn)
    if not callable(getattr(client, "discover_limits", None)):
        return None
    return cast(_SizedClient, client)


def client_workers(coro_fn: Callable[..., object]) -> int | None:
    """The `max_workers` of the client a bound method (or a partial of one) belongs to.

    `run_concurrent(client.generate_answer, prompts)` then runs as many workers as the client
    can put on the wire, not `DEFAULT_MAX_WORKERS` mostly waiting for its slots.
    """
    workers = getattr(_owner(coro_fn), "max_workers", None)
    return workers if isinstance(workers, int) and not isinstance(workers, bool) else None


def _check_pool_args(coro_fn: object, items: object, max_concurrent: object) -> None:
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

    A pool of workers (``max_concurrent``; by default the client's ``max_workers`` when
    ``coro_fn`` is a client's method, else ``DEFAULT_MAX_WORKERS``; no more than
    ``len(items)`` for sized inputs; other inputs start one worker, then one more per item
    pulled) pulls items lazily from any iterable, generator or
    async iterable. A worker whose outcome the consumer has not taken yet pulls nothing new,
    so at most a pool's worth of finished outcomes wait for a slow consumer.

    With ``return_exceptions=False`` the first failure cancels the calls in flight and is
    raised by the iteration, after the outcomes finished before it; with True a failed item's
    outcome is its exception. A CancelledError raised by ``coro_fn`` counts as that item's
    failure; an error raised by ``items`` ends the run and is raised. Leaving the block,
    early or on an error, cancels the calls still running and waits for them.
    """
    return _Pool(coro_fn, items, max_concurrent, return_exceptions, pause_at=1)


# --- reporting ------------------------------------------------------------------------------


class _Progress:
    """Sends progress to a tqdm bar (``tqdm.auto``: a widget in a notebook) or a ProgressCallback.

    The bar throttles its own refreshes (``mininterval``); a callback, or a bar whose
    description comes from ``desc_callback``, is updated at most every ``_PROGRESS_INTERVAL``.
    """

    def __init__(
        self,
        target: bool | ProgressCallback,
        total: int | None,
        desc: str,
        unit: str,
        desc_callback: Callable[[int, int | None, list[Any]], str] | None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.desc_callback = desc_callback
        self.completed: list[Any] = []  # successful results, for desc_callback
        self.callback: ProgressCallback | None = None
        self.bar: tqdm[Any] | None = None
        self._shown_at = time.monotonic()
        if callable(target):
            self.callback = target
        else:
            from tqdm.auto import tqdm

            # miniters=1: tqdm checks the clock on every update instead of guessing how many
            # updates to skip from the rate so far (a burst then freezes the bar).
            self.bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                mininterval=_PROGRESS_INTERVAL,
                miniters=1,
            )

    def advance(self, done: int) -> None:
        """``done`` items finished: show it, unless the last update is too recent."""
        if self.bar is not None and self.desc_callback is None:
            self.bar.update(done - self.bar.n)  # tqdm skips refreshes within its mininterval
            return
        now = time.monotonic()
        if now - self._shown_at >= _PROGRESS_INTERVAL:
            self._shown_at = now
            self.emit(done)

    def emit(self, done: int, final: bool = False) -> None:
        desc = self.desc
        if self.desc_callback is not None:
            desc = self.desc_callback(done, self.total, self.completed)
        if self.bar is not None:
            if self.desc_callback is not None:
                self.bar.set_description_str(desc, refresh=False)
            self.bar.update(done - self.bar.n)
        elif self.callback is not None:
            total = self.total
            fraction: float | tuple[int, None]
            if final:
                fraction = 1.0
            elif total is None:
                fraction = (done, None)
            else:
                fraction = min(1.0, done / total) if total else 0.0
            self.callback(fraction, desc=desc)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Tally:
    """Counts a run's finished items: a log line every log_interval, and the progress display.

    As a context manager it logs the run's summary and closes the progress bar.
    """

    __slots__ = (
        "_completed",
        "_desc",
        "_log_interval",
        "_next_log",
        "_pool",
        "_progress",
        "_t0",
        "_unit",
        "done",
    )

    def __init__(
        self,
        pool: _Pool[Any, Any],
        desc: str,
        unit: str,
        log_interval: int,
        progress: _Progress | None,
    ) -> None:
        self._pool = pool
        self._desc = desc
        self._unit = unit
        self._log_interval = log_interval
        self._progress = progress
        self._completed = None  # successful results in completion order, for desc_callback
        if progress is not None and progress.desc_callback is not None:
            self._completed = progress.completed
        self.done = 0
        self._next_log = log_interval
        self._t0 = time.monotonic()

    def __enter__(self) -> _Tally:
        return self

    def start(self) -> None:
        if self._progress is not None:
            self._progress.emit(0)
        if logger.isEnabledFor(logging.DEBUG):
            total = self._pool.total
            logger.debug(
                "%s: starting %d workers, total %s", self._desc, self._pool.n_workers, total
            )

    def add(self, batch: Collection[tuple[int, Any]]) -> None:
        """Count a batch of outcomes (keeping the successful ones when desc_callback wants them)."""
        completed = self._completed
        if completed is not None:
            failed = self._pool.failed
            completed.extend(outcome for i, outcome in batch if i not in failed)
        self.count(len(batch))

    def count(self, n: int) -> None:
        """Add ``n`` completions: a log line at every ``log_interval`` crossed, then progress."""
        done = self.done = self.done + n
        while done >= self._next_log:
            if logger.isEnabledFor(logging.INFO):
                self._log_progress(self._next_log)
            self._next_log += self._log_interval
        if self._progress is not None:
            self._progress.advance(done)

    def _log_progress(self, d: int) -> None:
        elapsed = time.monotonic() - self._t0
        logger.info(
            "%s: %d/%s %s done, %d active, %.1f %s/s, %d errors",
            self._desc,
            d,
            "?" if self._pool.total is None else self._pool.total,
            self._unit,
            self._pool.busy,
            d / elapsed if elapsed > 0 else 0.0,
            self._unit,
            self._pool.errors,
        )

    def finish(self) -> None:
        """The last progress update of a successful run."""
        if self._progress is not None:
            self._progress.emit(self.done, final=True)

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> None:
        if self._progress is not None:
            self._progress.close()
        if not logger.isEnabledFor(logging.INFO):
            return
        pool = self._pool
        errors = pool.errors
        if exc is None:
            outcome = "finished"
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit) and exc is not pool.error:
            outcome = "cancelled"
        else:
            outcome = "failed"
            errors += exc is not pool.error  # progress or desc_callback failed
        elapsed = time.monotonic() - self._t0
        logger.info(
            "%s: %s, %d/%s %s done in %.2fs (%.1f %s/s), %d errors",
            self._desc,
            outcome,
            self.done,
            "?" if pool.total is None else pool.total,
            self._unit,
            elapsed,
            self.done / elapsed if elapsed > 0 else 0.0,
            self._unit,
            errors,
        )


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _check_report_args(progress_bar: object, log_interval: object, desc_callback: object) -> None:
    check_int("log_interval", log_interval, 1)
    if (
        progress_bar is not None
        and not isinstance(progress_bar, bool)
        and not callable(progress_bar)
    ):
        raise TypeError(f"progress_bar={progress_bar!r}: must be a bool, None or a callable")
    if desc_callback is not None and not callable(desc_callback):
        raise TypeError(f"desc_callback={desc_callback!r}: must be callable or None")


def _store(results: list[Any], batch: Iterable[tuple[int, Any]]) -> None:
    """Put each outcome in its input slot, growing the list for inputs without a len()."""
    for i, outcome in batch:
        try:
            results[i] = outcome
        except IndexError:
            results.extend([None] * (i + 1 - len(results) + len(results) // 8))
            results[i] = outcome


# --- on the pool ----------------------------------------------------------------------------


@overload
async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: Literal[False] = ...,
) -> list[R]: ...


@overload
async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: Literal[True],
) -> list[R | BaseException]: ...


@overload
async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: bool,
) -> list[R] | list[R | BaseException]: ...


async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = "processing",
    unit: str = "item",
    progress_bar: bool | ProgressCallback | None = None,
    log_interval: int = 50,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = None,
    max_concurrent: int | None = None,
    return_exceptions: bool = False,
) -> list[R] | list[R | BaseException]:
    """Await ``coro_fn(item)`` for every item, at most ``max_concurrent`` at a time.

    The pool of :func:`amap` (same laziness, bound, failures and cancellation), with results
    returned in input order. ``max_concurrent=None`` sizes the pool to the client when
    ``coro_fn`` is a client's method (``client.generate_answer``, or a ``functools.partial`` of
    one), else ``DEFAULT_MAX_WORKERS`` workers; the real bound is the client's own limit.
    With ``return_exceptions=True`` a failed item's slot holds its exception. Cancelling the
    caller cancels all workers and re-raises CancelledError. An exception raised by
    ``items`` itself, ``progress_bar`` or ``desc_callback`` ends the run and is raised.

    ``progress_bar``: None shows a tqdm bar on stderr when it is a terminal, True always,
    False never; a ``ProgressCallback`` is called instead of drawing a bar. Updates happen
    at most every 0.1 s. ``desc_callback(done, total, results)`` sets the description shown;
    ``results`` holds the successful results so far, in completion order. ``total`` is
    ``len(items)`` for sized inputs, else None.

    Logs to ``llmclient.mapping``: DEBUG at start, INFO every ``log_interval`` completions
    (done/total, workers busy, rate, errors) and an INFO summary at the end.
    """
    pool = _Pool(coro_fn, items, max_concurrent, return_exceptions, pause_at=None)
    _check_report_args(progress_bar, log_interval, desc_callback)
    show = _stderr_is_terminal() if progress_bar is None else progress_bar
    progress = _Progress(show, pool.total, desc, unit, desc_callback) if show else None
    results: list[Any] = [None] * (pool.total or 0)
    with _Tally(pool, desc, unit, log_interval, progress) as tally:
        async with pool:  # sizes the workers: start() logs how many
            tally.start()
            while batch := await pool.next_batch():
                _store(results, batch)
                tally.add(batch)
        tally.finish()
    del results[tally.done :]
    return results


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: Literal[False] = ...,
    failed_as_none: Literal[False] = ...,
) -> list[R]: ...


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: Literal[True],
    failed_as_none: Literal[False] = ...,
) -> list[R | BaseException]: ...


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: bool = ...,
    failed_as_none: Literal[True],
) -> list[R | None]: ...


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = ...,
    unit: str = ...,
    progress_bar: bool | ProgressCallback | None = ...,
    log_interval: int = ...,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = ...,
    max_concurrent: int | None = ...,
    return_exceptions: bool,
    failed_as_none: bool = ...,
) -> list[R] | list[R | BaseException] | list[R | None]: ...


def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    desc: str = "processing",
    unit: str = "item",
    progress_bar: bool | ProgressCallback | None = None,
    log_interval: int = 50,
    desc_callback: Callable[[int, int | None, list[R]], str] | None = None,
    max_concurrent: int | None = None,
    return_exceptions: bool = False,
    failed_as_none: bool = False,
) -> list[R] | list[R | BaseException] | list[R | None]:
    """Run :func:`run_concurrent` in a new event loop, from synchronous code.

    ``failed_as_none=True`` is GraphGen's behaviour: every item is attempted, a failed item's
    place holds None, and each failure is logged (at WARNING, to ``llmclient.mapping``);
    without it the first failure is raised, or held in its place with
    ``return_exceptions=True``. Raises RuntimeError when called while an event loop is
    running in this thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run_concurrent_sync() cannot be called from a running event loop; "
            "use `await run_concurrent(...)` instead"
        )
    results = asyncio.run(
        run_concurrent(
            coro_fn,
            items,
            desc=desc,
            unit=unit,
            progress_bar=progress_bar,
            log_interval=log_interval,
            desc_callback=desc_callback,
            max_concurrent=max_concurrent,
            return_exceptions=return_exceptions or failed_as_none,
        )
    )
    if not failed_as_none:
        return results
    return [_none_if_failed(index, outcome, desc) for index, outcome in enumerate(results)]


def _none_if_failed(index: int, outcome: R | BaseException, desc: str) -> R | None:
    if not isinstance(outcome, BaseException):
        return outcome
    logger.warning("%s: item %d failed: %s: %s", desc, index, type(outcome).__name__, outcome)
    return None


async def iterate_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_concurrent: int | None = None,
    return_exceptions: bool = False,
) -> AsyncGenerator[tuple[int, R | BaseException], None]:
    """Yield `(index, result)` as each call finishes, in completion order.

    :func:`amap` as an async generator, with run_concurrent's log lines (desc "processing").
    At most a pool's worth of finished results wait for the consumer. With
    `return_exceptions=False` the first failure ends the iteration and is raised; with True
    it is yielded in place of a result. Leaving the loop early (aclose) cancels the calls
    still running.
    """
    pool = _Pool(coro_fn, items, max_concurrent, return_exceptions, pause_at=1)
    with _Tally(pool, "processing", "item", 50, None) as tally:
        async with pool:
            tally.start()
            async for pair in pool:
                tally.count(1)
                yield pair
