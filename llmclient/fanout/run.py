"""The public functions on `amap`'s workers: `run_concurrent` (results in input order,
progress, log lines), `run_concurrent_sync` (the same from synchronous code) and
`iterate_concurrent`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Literal, TypedDict, TypeVar, Unpack, overload

from llmclient._runner import run_in_new_loop
from llmclient.fanout.reporting import (
    ProgressCallback,
    _check_report_args,
    _Progress,
    _show_bar_by_default,
    _Tally,
)
from llmclient.fanout.workers import _Workers, logger
from llmclient.limits.spending import Budget, BudgetTracker

__all__ = ["MapOptions", "iterate_concurrent", "run_concurrent", "run_concurrent_sync"]

T = TypeVar("T")
R = TypeVar("R")


class MapOptions(TypedDict, Generic[R], total=False):
    """The keyword options `run_concurrent` and `run_concurrent_sync` share, each optional.

    ``desc`` ("processing") and ``unit`` ("item") name the run in its bar and log lines;
    ``progress_bar`` (None: a bar on a terminal or in a notebook with ipywidgets);
    ``log_interval`` (50): an INFO line every that many completions; ``desc_callback``
    (None): sets the description shown;
    ``max_concurrent`` (None: sized to the client when ``coro_fn`` is a client's method);
    ``budget`` (None): a `Budget` (or `BudgetTracker`) every request of the run counts against.
    """

    desc: str
    unit: str
    progress_bar: bool | ProgressCallback | None
    log_interval: int
    desc_callback: Callable[[int, int | None, list[R]], str] | None
    max_concurrent: int | None
    budget: Budget | BudgetTracker | None


_OPTION_NAMES = MapOptions.__optional_keys__
_DEFAULT_DESC = "processing"


def _check_options(function: str, options: Mapping[str, object]) -> None:
    """The TypeError Python raises for an unknown keyword argument (mypy rejects it too)."""
    unknown = sorted(options.keys() - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")


def _store(results: list[Any], batch: Iterable[tuple[int, Any]]) -> None:
    """Put each outcome in its input slot, growing the list for inputs without a len()."""
    for i, outcome in batch:
        try:
            results[i] = outcome
        except IndexError:
            results.extend([None] * (i + 1 - len(results) + len(results) // 8))
            results[i] = outcome


@overload
async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: Literal[False] = ...,
    **options: Unpack[MapOptions[R]],
) -> list[R]: ...


@overload
async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: Literal[True],
    **options: Unpack[MapOptions[R]],
) -> list[R | BaseException]: ...


@overload
async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: bool,
    **options: Unpack[MapOptions[R]],
) -> list[R] | list[R | BaseException]: ...


async def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: bool = False,
    **options: Unpack[MapOptions[R]],
) -> list[R] | list[R | BaseException]:
    """Await ``coro_fn(item)`` for every item, at most ``max_concurrent`` at a time.

    The workers of :func:`amap` (same laziness, bound, failures and cancellation), with results
    returned in input order. ``max_concurrent=None`` sizes the workers to the client when
    ``coro_fn`` is a client's method (``client.generate_answer``, or a ``functools.partial`` of
    one), else ``DEFAULT_MAX_WORKERS`` workers; the real bound is the client's own limit.
    With ``return_exceptions=True`` a failed item's slot holds its exception. Cancelling the
    caller cancels all workers and re-raises CancelledError. An exception raised by
    ``items`` itself, ``progress_bar`` or ``desc_callback`` ends the run and is raised.

    The other options (`MapOptions`): ``desc`` ("processing") and ``unit`` ("item") name the
    run. ``progress_bar``: None shows a tqdm bar when stderr is a terminal or in a Jupyter
    notebook with ipywidgets (tqdm's notebook bar), True always, False never; a
    ``ProgressCallback`` is called instead of drawing a bar. Updates happen at most every
    0.1 s. ``desc_callback(done, total, results)`` sets the description
    shown; ``results`` holds the successful results so far, in completion order. ``total`` is
    ``len(items)`` for sized inputs, else None.

    Logs to ``llmclient.mapping``: DEBUG at start, INFO every ``log_interval`` (50)
    completions (done/total, workers busy, rate, errors) and an INFO summary at the end.

    ``budget``: every request the calls make (through any client) is counted against it; once
    the next one would exceed it, the calls in flight finish and every item not started ends
    with `BudgetExceededError` (raised, or in its place with ``return_exceptions=True``).
    """
    _check_options("run_concurrent", options)
    desc = options.get("desc", _DEFAULT_DESC)
    unit = options.get("unit", "item")
    progress_bar = options.get("progress_bar")
    log_interval = options.get("log_interval", 50)
    desc_callback = options.get("desc_callback")
    workers = _Workers(
        coro_fn,
        items,
        options.get("max_concurrent"),
        return_exceptions,
        pause_at=None,
        budget=options.get("budget"),
    )
    _check_report_args(progress_bar, log_interval, desc_callback)
    show = _show_bar_by_default() if progress_bar is None else progress_bar
    progress = _Progress(show, workers.total, desc, unit, desc_callback) if show else None
    results: list[Any] = [None] * (workers.total or 0)
    with _Tally(workers, desc, unit, log_interval, progress) as tally:
        async with workers:  # sizes the workers: start() logs how many
            tally.start()
            while batch := await workers.next_batch():
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
    return_exceptions: Literal[False] = ...,
    failed_as_none: Literal[False] = ...,
    **options: Unpack[MapOptions[R]],
) -> list[R]: ...


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: Literal[True],
    failed_as_none: Literal[False] = ...,
    **options: Unpack[MapOptions[R]],
) -> list[R | BaseException]: ...


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: bool = ...,
    failed_as_none: Literal[True],
    **options: Unpack[MapOptions[R]],
) -> list[R | None]: ...


@overload
def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: bool,
    failed_as_none: bool = ...,
    **options: Unpack[MapOptions[R]],
) -> list[R] | list[R | BaseException] | list[R | None]: ...


def run_concurrent_sync(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    return_exceptions: bool = False,
    failed_as_none: bool = False,
    **options: Unpack[MapOptions[R]],
) -> list[R] | list[R | BaseException] | list[R | None]:
    """Run :func:`run_concurrent` in a new event loop, from synchronous code.

    Takes the same options. ``failed_as_none=True`` is GraphGen's behaviour: every item is
    attempted, a failed item's place holds None, and each failure is logged (at WARNING, to
    ``llmclient.mapping``); without it the first failure is raised, or held in its place with
    ``return_exceptions=True``. Called while an event loop runs in this thread (a notebook
    cell), it runs the new loop in a thread of its own and blocks until the run ends.
    """
    _check_options("run_concurrent_sync", options)
    run = run_concurrent(
        coro_fn, items, return_exceptions=return_exceptions or failed_as_none, **options
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        results = asyncio.run(run)
    else:  # a notebook: its loop is busy running this cell, so run in a loop of our own
        results = run_in_new_loop(run, "llmclient-run_concurrent_sync")
    if not failed_as_none:
        return results
    desc = options.get("desc", _DEFAULT_DESC)
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
    budget: Budget | BudgetTracker | None = None,
) -> AsyncGenerator[tuple[int, R | BaseException], None]:
    """Yield `(index, result)` as each call finishes, in completion order.

    :func:`amap` as an async generator, with run_concurrent's log lines (desc "processing").
    At most one finished result per worker waits for the consumer. With
    `return_exceptions=False` the first failure ends the iteration and is raised; with True
    it is yielded in place of a result. Leaving the loop early (aclose) cancels the calls
    still running. ``budget`` as for :func:`run_concurrent`.
    """
    workers = _Workers(coro_fn, items, max_concurrent, return_exceptions, pause_at=1, budget=budget)
    with _Tally(workers, "processing", "item", 50, None) as tally:
        async with workers:
            tally.start()
            async for pair in workers:
                tally.count(1)
                yield pair
