"""Map an async function over many items with a bounded pool of workers.

Items are pulled lazily, results come back in input order, progress and logging are optional.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sized,
)
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["ProgressCallback", "iterate_concurrent", "run_concurrent", "run_concurrent_sync"]

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("llmclient.mapping")

DEFAULT_MAX_WORKERS = 256
"""Worker count when ``max_concurrent`` is None.

Not a server limit (that is the client's own concurrency limit); it only stops the pool from
turning into one task per item.
"""

_PROGRESS_INTERVAL = 0.1
"""Minimum seconds between two progress updates (bar refresh or callback call)."""


class ProgressCallback(Protocol):
    """Gradio-style progress sink, called as ``progress(fraction, desc=description)``.

    ``fraction`` is ``done / total`` when the total is known, else the Gradio tuple
    ``(done, None)``. Called once at the start, then at most every 0.1 s as items complete;
    the last call of a successful run is always ``1.0``.
    """

    def __call__(self, progress: float | tuple[int, None], /, *, desc: str) -> object: ...


class _Progress:
    """Sends progress to a tqdm bar or a ProgressCallback; throttled by the caller."""

    def __init__(
        self,
        target: bool | ProgressCallback,
        total: int | None,
        desc: str,
        unit: str,
        desc_callback: Callable[[int, int | None, list[Any]], str] | None,
        completed: list[Any] | None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.desc_callback = desc_callback
        self.completed = completed if completed is not None else []
        self.callback: ProgressCallback | None = None
        self.bar: tqdm[Any] | None = None
        if callable(target):
            self.callback = target
        else:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

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


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _validate(
    coro_fn: object,
    items: object,
    progress_bar: object,
    log_interval: object,
    desc_callback: object,
    max_concurrent: object,
) -> None:
    if not callable(coro_fn):
        raise ValueError(f"coro_fn must be callable, got {coro_fn!r}")
    if not isinstance(items, Iterable | AsyncIterable):
        raise TypeError(f"items must be an iterable or async iterable, got {type(items).__name__}")
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool)
        or not isinstance(max_concurrent, int)
        or max_concurrent < 1
    ):
        raise ValueError(f"max_concurrent must be an int >= 1 or None, got {max_concurrent!r}")
    if isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 1:
        raise ValueError(f"log_interval must be an int >= 1, got {log_interval!r}")
    if (
        progress_bar is not None
        and not isinstance(progress_bar, bool)
        and not callable(progress_bar)
    ):
        raise ValueError(f"progress_bar must be a bool, None or a callable, got {progress_bar!r}")
    if desc_callback is not None and not callable(desc_callback):
        raise ValueError(f"desc_callback must be callable or None, got {desc_callback!r}")


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

    A fixed pool of workers pulls items lazily from ``items`` (any iterable, generator or
    async iterable); results are returned in input order. ``max_concurrent=None`` means
    ``DEFAULT_MAX_WORKERS`` workers (the real bound is then whatever ``coro_fn`` enforces).

    With ``return_exceptions=False`` the first failure cancels every in-flight call, stops
    pulling items and is raised as is. With ``True`` a failed item's slot holds its exception.
    A CancelledError raised by ``coro_fn`` itself counts as that item's failure; cancelling
    the caller cancels all workers and re-raises CancelledError. An exception raised by
    ``items`` itself, ``progress_bar`` or ``desc_callback`` ends the run and is raised.

    ``progress_bar``: None shows a tqdm bar on stderr when it is a terminal, True always,
    False never; a ``ProgressCallback`` is called instead of drawing a bar. Updates happen
    at most every 0.1 s. ``desc_callback(done, total, results)`` sets the description shown;
    ``results`` holds the successful results so far, in completion order. ``total`` is
    ``len(items)`` for sized inputs, else None.

    Logs to ``llmclient.mapping``: DEBUG at start, INFO every ``log_interval`` completions
    (done/total, in flight, rate, errors) and an INFO summary at the end.
    """
    _validate(coro_fn, items, progress_bar, log_interval, desc_callback, max_concurrent)
    total = len(items) if isinstance(items, Sized) else None
    limit = DEFAULT_MAX_WORKERS if max_concurrent is None else max_concurrent
    n_workers = limit if total is None else max(1, min(limit, total))
    show = _stderr_is_terminal() if progress_bar is None else progress_bar

    results: list[Any] = []  # one slot per pulled item, filled on completion
    append = results.append
    completed: list[Any] | None = [] if show and desc_callback is not None else None
    prog = _Progress(show, total, desc, unit, desc_callback, completed) if show else None
    done = 0
    errors = 0
    first_error: BaseException | None = None

    # Per item the workers only bump `done`; everything else happens in tick(), called when
    # `done` reaches `next_at`: a log line every `log_interval`, and a clock check for the
    # progress display every `stride` completions, the stride aiming at one check per interval.
    interval = _PROGRESS_INTERVAL
    next_log = log_interval
    next_prog = 1
    next_at = 1 if prog is not None else next_log
    t0 = last_t = time.monotonic()
    last_d = 0

    def tick() -> None:
        nonlocal next_at, next_log, next_prog, last_t, last_d
        d = done
        if d >= next_log:
            next_log = d + log_interval
            if logger.isEnabledFor(logging.INFO):
                elapsed = time.monotonic() - t0
                logger.info(
                    "%s: %d/%s %s done, %d active, %.1f %s/s, %d errors",
                    desc,
                    d,
                    "?" if total is None else total,
                    unit,
                    len(results) - d,
                    d / elapsed if elapsed > 0 else 0.0,
                    unit,
                    errors,
                )
        if prog is None:
            next_at = next_log
            return
        if d >= next_prog:
            now = time.monotonic()
            dt = now - last_t
            if dt >= interval:
                prog.emit(d)
                stride = int((d - last_d) * interval / dt) if dt > 0 else 1
                last_t, last_d = now, d
            else:
                stride = int((d - last_d) * (interval - dt) / dt) if dt > 0 else 2 * (d - last_d)
            next_prog = d + max(1, stride)
        next_at = min(next_log, next_prog)

    def store_failure(i: int, exc: BaseException) -> None:
        """Put a failed item's exception in its slot (return_exceptions=True)."""
        nonlocal done, errors
        errors += 1
        results[i] = exc
        done += 1
        if done >= next_at:
            tick()

    workers: list[asyncio.Task[None]] = []

    def stop(exc: BaseException, me: asyncio.Task[Any]) -> None:
        """End the run on its first failure: keep the error, cancel the other workers.

        Workers never raise to the task group (which would cancel this function's task and,
        on Python 3.11, leave its cancelling() count raised); they cancel each other instead.
        """
        nonlocal errors, first_error
        if first_error is None:
            errors += 1
            first_error = exc
        for task in workers:
            if task is not me:
                task.cancel()

    def failed_while_cancelled(exc: Exception) -> asyncio.CancelledError:
        """Swap an error raised by a call that was being cancelled for the cancellation."""
        logger.debug("%s: error while cancelling: %r", desc, exc)
        return asyncio.CancelledError()

    async def run_one(me: asyncio.Task[Any], i: int, item: T) -> bool:
        """Await one item and store its outcome; False when the run must stop."""
        nonlocal done
        try:
            r = await coro_fn(item)
        except (Exception, asyncio.CancelledError) as exc:
            if me.cancelling():  # this worker is being cancelled, not just the call
                raise
            if not return_exceptions:
                stop(exc, me)
                return False
            store_failure(i, exc)
            return True
        results[i] = r
        done += 1
        if completed is not None:
            completed.append(r)
        if done >= next_at:
            tick()
        return True

    def worker_ended(me: asyncio.Task[Any], exc: Exception | asyncio.CancelledError) -> None:
        """Handle an error from the items or a callback, or the worker's own cancellation."""
        if not me.cancelling():
            stop(exc, me)
        elif isinstance(exc, Exception):  # a call or the source failed while being cancelled
            raise failed_while_cancelled(exc) from exc
        else:
            raise exc

    async def worker(source: Iterator[tuple[int, T]]) -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            for i, item in source:
                append(None)
                if not await run_one(me, i, item):
                    return
        except (Exception, asyncio.CancelledError) as exc:
            worker_ended(me, exc)

    lock = asyncio.Lock()  # an async generator cannot be advanced by two workers at once
    exhausted = False

    async def async_worker(source: AsyncIterator[T]) -> None:
        nonlocal exhausted
        me = asyncio.current_task()
        assert me is not None
        try:
            while True:
                async with lock:
                    if exhausted:
                        return
                    try:
                        item = await anext(source)
                    except StopAsyncIteration:
                        exhausted = True
                        return
                    i = len(results)
                    append(None)
                if not await run_one(me, i, item):
                    return
        except (Exception, asyncio.CancelledError) as exc:
            worker_ended(me, exc)

    outcome = "failed"
    try:
        if prog is not None:
            prog.emit(0)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: starting %d workers, total %s", desc, n_workers, total)
        async with asyncio.TaskGroup() as tg:
            if isinstance(items, AsyncIterable):
                aiterator = aiter(items)
                for _ in range(n_workers):
                    workers.append(tg.create_task(async_worker(aiterator)))
            else:
                iterator = enumerate(items)
                for _ in range(n_workers):
                    workers.append(tg.create_task(worker(iterator)))
        if first_error is not None:
            raise first_error
        if prog is not None:
            prog.emit(done, final=True)
        outcome = "finished"
        return results
    except asyncio.CancelledError as exc:
        if exc is not first_error:
            outcome = "cancelled"
        raise
    finally:
        if prog is not None:
            prog.close()
        if logger.isEnabledFor(logging.INFO):
            elapsed = time.monotonic() - t0
            logger.info(
                "%s: %s, %d/%s %s done in %.2fs (%.1f %s/s), %d errors",
                desc,
                outcome,
                done,
                "?" if total is None else total,
                unit,
                elapsed,
                done / elapsed if elapsed > 0 else 0.0,
                unit,
                errors,
            )


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
    return_exceptions: bool,
) -> list[R] | list[R | BaseException]: ...


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
) -> list[R] | list[R | BaseException]:
    """Run :func:`run_concurrent` in a new event loop, from synchronous code.

    Raises RuntimeError when called while an event loop is running in this thread.
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
    return asyncio.run(
        run_concurrent(
            coro_fn,
            items,
            desc=desc,
            unit=unit,
            progress_bar=progress_bar,
            log_interval=log_interval,
            desc_callback=desc_callback,
            max_concurrent=max_concurrent,
            return_exceptions=return_exceptions,
        )
    )


async def iterate_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_concurrent: int | None = None,
    return_exceptions: bool = False,
) -> AsyncGenerator[tuple[int, R | BaseException], None]:
    """Yield `(index, result)` as each call finishes, in completion order.

    Built on `run_concurrent` (same laziness, bound and cancellation); at most a pool's worth
    of finished results wait for the consumer. With `return_exceptions=False` the first
    failure ends the iteration and is raised; with True it is yielded in place of a result.
    Leaving the loop early cancels the calls still running.
    """
    _validate(coro_fn, items, False, 1, None, max_concurrent)
    finished: asyncio.Queue[tuple[int, R | BaseException]] = asyncio.Queue(
        maxsize=max_concurrent or DEFAULT_MAX_WORKERS
    )

    async def call(pair: tuple[int, T]) -> None:
        index, item = pair
        try:
            outcome: R | BaseException = await coro_fn(item)
        except Exception as error:
            if not return_exceptions:
                raise
            outcome = error
        await finished.put((index, outcome))

    indexed: Iterable[tuple[int, T]] | AsyncIterable[tuple[int, T]]
    indexed = _aenumerate(items) if isinstance(items, AsyncIterable) else enumerate(items)
    runner = asyncio.ensure_future(
        run_concurrent(call, indexed, progress_bar=False, max_concurrent=max_concurrent)
    )
    try:
        while not (runner.done() and finished.empty()):
            getter = asyncio.ensure_future(finished.get())
            await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        runner.result()  # the first failure, when return_exceptions is False
    finally:
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


async def _aenumerate(items: AsyncIterable[T]) -> AsyncIterator[tuple[int, T]]:
    index = 0
    async for item in items:
        yield index, item
        index += 1
