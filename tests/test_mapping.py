"""Tests for llmclient.mapping: amap, run_concurrent and run_concurrent_sync."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llmclient.fanout import reporting
from llmclient.mapping import (
    DEFAULT_MAX_WORKERS,
    amap,
    iterate_concurrent,
    run_concurrent,
    run_concurrent_sync,
)


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


class Counting:
    """An iterator over range(n) that records how many items were pulled."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        while self.pulled < self.n:
            self.pulled += 1
            yield self.pulled - 1


class Tracker:
    """A coro_fn that records concurrency, starts and cancellations."""

    def __init__(self, delay: float = 0.0, busy: int = 0) -> None:
        self.delay = delay
        self.busy = busy
        self.all_busy = asyncio.Event()  # set once `busy` calls are in flight together
        self.active = 0
        self.peak = 0
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def __call__(self, x: int) -> int:
        self.started.append(x)
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.busy and self.active >= self.busy:
            self.all_busy.set()
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.append(x)
            raise
        finally:
            self.active -= 1
        self.finished.append(x)
        return x


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def asyncio_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()
    return [
        r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR
    ]


# --- results and ordering -------------------------------------------------------------------


async def test_order_kept_under_random_latencies() -> None:
    rng = random.Random(1234)
    delays = [rng.uniform(0, 0.01) for _ in range(200)]

    async def slow_square(i: int) -> int:
        await asyncio.sleep(delays[i])
        return i * i

    results = await run_concurrent(slow_square, range(200), max_concurrent=17, progress_bar=False)
    assert results == [i * i for i in range(200)]


@pytest.mark.parametrize(
    "items",
    [[], (), range(0), iter([]), (x for x in range(0))],
    ids=["list", "tuple", "range", "iterator", "generator"],
)
async def test_empty_input_returns_empty_list(items: Any) -> None:
    assert await run_concurrent(double, items, progress_bar=False) == []


async def test_empty_async_iterable_returns_empty_list() -> None:
    async def nothing() -> AsyncIterator[int]:
        return
        yield

    assert await run_concurrent(double, nothing(), progress_bar=False) == []


async def test_single_item_and_default_worker_count() -> None:
    assert await run_concurrent(double, [21], progress_bar=False) == [42]


# --- laziness -------------------------------------------------------------------------------


async def test_generator_is_consumed_lazily() -> None:
    source = Counting(10**6)
    pulled_at_first_result: list[int] = []

    class Stop(Exception):
        pass

    async def fn(x: int) -> int:
        await asyncio.sleep(0.001 * (x % 5))
        if not pulled_at_first_result:
            pulled_at_first_result.append(source.pulled)
        if len(pulled_at_first_result) == 1 and x > 30:
            raise Stop
        return x

    with pytest.raises(Stop):
        await run_concurrent(fn, iter(source), max_concurrent=10, progress_bar=False)
    assert pulled_at_first_result[0] <= 10 + 1
    # The run stopped at the failure: the generator was not drained afterwards.
    assert source.pulled < 100


async def test_async_iterable_source_is_lazy_and_ordered() -> None:
    pulled = 0
    first_seen: list[int] = []

    async def agen(n: int) -> AsyncIterator[int]:
        nonlocal pulled
        for i in range(n):
            await asyncio.sleep(0)
            pulled += 1
            yield i

    async def fn(x: int) -> int:
        await asyncio.sleep(0.001 * (7 - x % 7))
        if not first_seen:
            first_seen.append(pulled)
        return x + 1

    results = await run_concurrent(fn, agen(300), max_concurrent=8, progress_bar=False)
    assert results == list(range(1, 301))
    assert first_seen[0] <= 8 + 1


async def test_async_iterable_class_without_generator() -> None:
    class Source:
        def __init__(self) -> None:
            self.i = 0

        def __aiter__(self) -> Source:
            return self

        async def __anext__(self) -> int:
            if self.i >= 50:
                raise StopAsyncIteration
            self.i += 1
            return self.i

    assert await run_concurrent(double, Source(), max_concurrent=3, progress_bar=False) == [
        2 * i for i in range(1, 51)
    ]


# --- concurrency bound ----------------------------------------------------------------------


@pytest.mark.parametrize("max_concurrent", [1, 3, 7, 64])
async def test_peak_concurrency_equals_max_concurrent(max_concurrent: int) -> None:
    tracker = Tracker(delay=0.002)
    results = await run_concurrent(
        tracker, range(200), max_concurrent=max_concurrent, progress_bar=False
    )
    assert results == list(range(200))
    assert tracker.peak == max_concurrent


async def test_default_worker_count_when_max_concurrent_is_none() -> None:
    tracker = Tracker(delay=0.01)
    await run_concurrent(tracker, range(DEFAULT_MAX_WORKERS + 100), progress_bar=False)
    assert tracker.peak == DEFAULT_MAX_WORKERS


async def test_no_more_tasks_than_items() -> None:
    created = 0
    real_create_task = asyncio.TaskGroup.create_task

    def counting_create_task(self: asyncio.TaskGroup, *args: Any, **kwargs: Any) -> Any:
        nonlocal created
        created += 1
        return real_create_task(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio.TaskGroup, "create_task", counting_create_task)
        await run_concurrent(double, [1, 2, 3], max_concurrent=50, progress_bar=False)
        assert created == 3
        created = 0
        await run_concurrent(double, range(10_000), max_concurrent=5, progress_bar=False)
        assert created == 5
        created = 0
        await run_concurrent(double, [], max_concurrent=5, progress_bar=False)
        assert created == 1


# --- failures -------------------------------------------------------------------------------


async def test_first_error_cancels_in_flight_calls_and_is_raised(
    caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    boom = ValueError("item 3 failed")
    tracker = Tracker(delay=10)

    async def fn(x: int) -> int:
        if x == 3:
            await asyncio.sleep(0.01)
            raise boom
        return await tracker(x)

    with pytest.raises(ValueError) as info:
        async with asyncio.timeout(5):  # the other calls would sleep for 10 s
            await run_concurrent(fn, range(100), max_concurrent=5, progress_bar=False)
    assert info.value is boom
    # The calling task is not left marked as being cancelled.
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    # The four other workers were each in a call, and each call saw the cancellation.
    assert sorted(tracker.started) == [0, 1, 2, 4]
    assert sorted(tracker.cancelled) == [0, 1, 2, 4]
    assert tracker.finished == []
    assert other_tasks() == set()
    assert asyncio_errors(caplog) == []
    # An event loop some other test left behind may be collected here: not this test's doing.
    own = [str(w.message) for w in recwarn if "unclosed event loop" not in str(w.message)]
    assert own == []


async def test_first_error_with_many_failures_raises_the_first() -> None:
    async def fn(x: int) -> int:
        await asyncio.sleep(0.001 * x)
        raise KeyError(x)

    with pytest.raises(KeyError) as info:
        await run_concurrent(fn, range(20), max_concurrent=20, progress_bar=False)
    assert info.value.args == (0,)


async def test_error_raised_while_being_cancelled_does_not_replace_first_error() -> None:
    async def fn(x: int) -> int:
        if x == 0:
            await asyncio.sleep(0.01)
            raise ValueError("first")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None
        return x

    with pytest.raises(ValueError, match="first"):
        await run_concurrent(fn, range(4), max_concurrent=4, progress_bar=False)
    assert other_tasks() == set()


async def test_return_exceptions_accounts_for_every_item(caplog: pytest.LogCaptureFixture) -> None:
    async def fn(x: int) -> int:
        await asyncio.sleep(0.001 * (x % 4))
        if x % 3 == 0:
            raise ValueError(x)
        return x * 10

    results = await run_concurrent(
        fn, range(100), max_concurrent=6, progress_bar=False, return_exceptions=True
    )
    assert len(results) == 100
    errors = [r for r in results if isinstance(r, BaseException)]
    values = [r for r in results if not isinstance(r, BaseException)]
    assert len(errors) == 34
    assert len(values) == 66
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert isinstance(r, ValueError)
            assert r.args == (i,)
        else:
            assert r == i * 10
    assert asyncio_errors(caplog) == []


async def test_cancelled_error_from_one_item_is_that_items_failure() -> None:
    async def fn(x: int) -> int:
        await asyncio.sleep(0)
        if x == 2:
            raise asyncio.CancelledError("not the caller")
        return x

    results = await run_concurrent(
        fn, range(6), max_concurrent=3, progress_bar=False, return_exceptions=True
    )
    assert results[:2] == [0, 1]
    assert isinstance(results[2], asyncio.CancelledError)
    assert results[3:] == [3, 4, 5]


async def test_cancelled_error_from_one_item_stops_the_run() -> None:
    tracker = Tracker(delay=10)
    inner = asyncio.CancelledError("inner")

    async def fn(x: int) -> int:
        if x == 1:
            await asyncio.sleep(0.01)
            raise inner
        return await tracker(x)

    with pytest.raises(asyncio.CancelledError) as info:
        async with asyncio.timeout(5):  # the other calls would sleep for 10 s
            await run_concurrent(fn, range(10), max_concurrent=3, progress_bar=False)
    assert info.value is inner
    assert sorted(tracker.cancelled) == [0, 2]
    # The calling task itself was not cancelled and can keep working.
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    await asyncio.sleep(0)


async def test_error_from_the_items_themselves_is_raised() -> None:
    boom = OSError("disk gone")

    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise boom

    with pytest.raises(OSError) as info:
        await run_concurrent(
            double, source(), max_concurrent=2, progress_bar=False, return_exceptions=True
        )
    assert info.value is boom


async def test_error_from_a_progress_callback_ends_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reporting, "_PROGRESS_INTERVAL", 0.0)
    tracker = Tracker(delay=0.001)
    broken = LookupError("bad description")

    def describe(done: int, total: int | None, results: list[int]) -> str:
        if done >= 3:
            raise broken
        return "ok"

    def progress(fraction: float | tuple[int, None], /, *, desc: str) -> None:
        pass

    with pytest.raises(LookupError) as info:
        await run_concurrent(
            tracker, range(100), max_concurrent=2, progress_bar=progress, desc_callback=describe
        )
    assert info.value is broken
    assert len(tracker.started) < 10
    assert other_tasks() == set()


async def test_cancelled_error_from_an_async_source_is_raised_not_swallowed() -> None:
    inner = asyncio.CancelledError("source gave up")

    async def source() -> AsyncIterator[int]:
        for i in range(3):
            await asyncio.sleep(0)
            yield i
        raise inner

    with pytest.raises(asyncio.CancelledError) as info:
        await run_concurrent(double, source(), max_concurrent=2, progress_bar=False)
    assert info.value is inner
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


def test_keyboard_interrupt_propagates() -> None:
    async def fn(x: int) -> int:
        await asyncio.sleep(0)
        if x == 5:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        run_concurrent_sync(fn, range(20), max_concurrent=3, progress_bar=False)
    # asyncio itself reports the main task's KeyboardInterrupt as "never retrieved" when that
    # task is collected; collect it here rather than in whichever test runs next.
    gc.collect()


# --- caller cancellation --------------------------------------------------------------------


async def test_cancelling_the_caller_cancels_every_worker(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(delay=10, busy=4)
    source = Counting(1000)
    task = asyncio.create_task(
        run_concurrent(tracker, iter(source), max_concurrent=4, progress_bar=False)
    )
    await tracker.all_busy.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert sorted(tracker.cancelled) == [0, 1, 2, 3]
    assert tracker.active == 0
    assert other_tasks() == set()
    # Nothing keeps running or pulling items afterwards.
    await asyncio.sleep(0.02)
    assert source.pulled == 4
    assert tracker.started == [0, 1, 2, 3]
    assert asyncio_errors(caplog) == []


async def test_timeout_around_run_concurrent() -> None:
    tracker = Tracker(delay=10)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await run_concurrent(tracker, range(10), max_concurrent=2, progress_bar=False)
    assert sorted(tracker.cancelled) == [0, 1]
    assert other_tasks() == set()


async def test_caller_cancelled_while_a_call_converts_its_cancellation() -> None:
    started = asyncio.Event()

    async def fn(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("swallowed cancel") from None
        return x

    task = asyncio.create_task(run_concurrent(fn, range(3), max_concurrent=3, progress_bar=False))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert other_tasks() == set()


# --- progress -------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float | tuple[int, None], str]] = []

    def __call__(self, progress: float | tuple[int, None], /, *, desc: str) -> None:
        self.calls.append((progress, desc))


async def test_progress_callable_gets_every_fraction_without_throttle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reporting, "_PROGRESS_INTERVAL", 0.0)
    recorder = Recorder()
    await run_concurrent(
        double, list(range(40)), progress_bar=recorder, desc="doubling", max_concurrent=1
    )
    fractions = [f for f, _ in recorder.calls]
    # One call at start, one per batch of completions (one worker: a batch is one completion);
    # the last completion already says 1.0.
    assert fractions == [0.0] + [i / 40 for i in range(1, 41)] + [1.0]
    assert {d for _, d in recorder.calls} == {"doubling"}


async def test_progress_callable_is_throttled_but_monotonic_and_ends_at_one() -> None:
    recorder = Recorder()
    results = await run_concurrent(double, range(20_000), progress_bar=recorder, max_concurrent=10)
    assert len(results) == 20_000
    fractions = [f for f, _ in recorder.calls]
    assert fractions[0] == 0.0
    assert fractions[-1] == 1.0
    assert all(isinstance(f, float) for f in fractions)
    assert fractions == sorted(fractions)
    # Time based: far fewer calls than items.
    assert 2 <= len(fractions) < 2_000


async def test_progress_callable_with_unknown_total(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporting, "_PROGRESS_INTERVAL", 0.0)
    recorder = Recorder()
    await run_concurrent(double, (x for x in range(5)), progress_bar=recorder, max_concurrent=1)
    assert [f for f, _ in recorder.calls] == [
        (0, None),
        (1, None),
        (2, None),
        (3, None),
        (4, None),
        (5, None),
        1.0,
    ]


async def test_desc_callback_sets_the_description(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporting, "_PROGRESS_INTERVAL", 0.0)
    recorder = Recorder()
    seen: list[tuple[int, int | None, list[int]]] = []

    def describe(done: int, total: int | None, results: list[int]) -> str:
        seen.append((done, total, list(results)))
        return f"{done} of {total}, sum {sum(results)}"

    await run_concurrent(
        double, [1, 2, 3], progress_bar=recorder, desc_callback=describe, max_concurrent=1
    )
    assert [d for _, d in recorder.calls] == [
        "0 of 3, sum 0",
        "1 of 3, sum 2",
        "2 of 3, sum 6",
        "3 of 3, sum 12",
        "3 of 3, sum 12",
    ]
    assert seen[-1] == (3, 3, [2, 4, 6])


async def test_progress_bar_true_draws_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    def describe(done: int, total: int | None, results: list[int]) -> str:
        return f"custom-{done}"

    await run_concurrent(
        double, range(30), progress_bar=True, desc="bar-test", unit="row", desc_callback=describe
    )
    err = capsys.readouterr().err
    assert "30/30" in err
    assert "custom-30" in err
    assert "row" in err


async def test_progress_bar_default_is_silent_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[int] = []

    def describe(done: int, total: int | None, results: list[int]) -> str:
        calls.append(done)
        return "x"

    await run_concurrent(double, range(30), desc_callback=describe)
    await run_concurrent(double, range(30), progress_bar=False, desc_callback=describe)
    assert capsys.readouterr().err == ""
    assert calls == []


# --- logging --------------------------------------------------------------------------------


async def test_log_line_every_log_interval(caplog: pytest.LogCaptureFixture) -> None:
    async def fn(x: int) -> int:
        await asyncio.sleep(0)
        if x % 10 == 0:
            raise ValueError(x)
        return x

    caplog.set_level(logging.DEBUG, logger="llmclient")
    await run_concurrent(
        fn,
        range(200),
        log_interval=50,
        desc="logtest",
        max_concurrent=4,
        progress_bar=False,
        return_exceptions=True,
    )
    records = [r for r in caplog.records if r.name == "llmclient.mapping"]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert debug == ["logtest: starting 4 workers, total 200"]
    assert len(info) == 5
    for n, line in zip([50, 100, 150, 200], info, strict=False):
        assert line.startswith(f"logtest: {n}/200 item done, ")
        assert "item/s" in line
    # Errors counted so far: items 0, 10, ... among the first 50 completions.
    assert info[-2].endswith(", 20 errors")
    assert info[-1].startswith("logtest: finished, 200/200 item done in ")
    assert info[-1].endswith(", 20 errors")


async def test_log_active_count_and_unknown_total(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmclient.mapping")
    await run_concurrent(
        Tracker(delay=0.001), iter(range(10)), log_interval=5, max_concurrent=3, progress_bar=False
    )
    info = [r.getMessage() for r in caplog.records if r.name == "llmclient.mapping"]
    assert len(info) == 3
    assert info[0].startswith("processing: 5/? item done, ")
    assert " active, " in info[0]
    active = int(info[0].split(", ")[1].split()[0])
    assert 0 <= active <= 3


async def test_failure_and_cancellation_are_summarised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmclient.mapping")

    async def fail(x: int) -> int:
        raise ValueError(x)

    with pytest.raises(ValueError):
        await run_concurrent(fail, [1], progress_bar=False)
    assert caplog.records[-1].getMessage().startswith("processing: failed, 0/1 item done")


async def test_no_log_records_when_logging_disabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmclient")
    await run_concurrent(double, range(500), log_interval=1, progress_bar=False)
    assert [r for r in caplog.records if r.name.startswith("llmclient")] == []


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        ({"coro_fn": None}, "coro_fn", TypeError),
        ({"coro_fn": 42}, "coro_fn", TypeError),
        ({"max_concurrent": 0}, "max_concurrent.*0", ValueError),
        ({"max_concurrent": -3}, "max_concurrent.*-3", ValueError),
        ({"max_concurrent": True}, "max_concurrent.*True", TypeError),
        ({"max_concurrent": 2.5}, "max_concurrent.*2.5", TypeError),
        ({"max_concurrent": "4"}, "max_concurrent.*'4'", TypeError),
        ({"log_interval": 0}, "log_interval.*0", ValueError),
        ({"log_interval": -1}, "log_interval", ValueError),
        ({"progress_bar": "yes"}, "progress_bar", TypeError),
        ({"desc_callback": "nope"}, "desc_callback", TypeError),
    ],
)
async def test_bad_arguments_raise_before_consuming_items(
    kwargs: dict[str, Any], match: str, error: type[Exception]
) -> None:
    source = Counting(100)
    args: dict[str, Any] = {"coro_fn": double, "progress_bar": False}
    args.update(kwargs)
    coro_fn = args.pop("coro_fn")
    with pytest.raises(error, match=match):
        await run_concurrent(coro_fn, iter(source), **args)
    assert source.pulled == 0


@pytest.mark.parametrize("option", ["max_concurent", "progressbar", "return_exception"])
def test_an_unknown_option_raises_type_error_naming_it(option: str) -> None:
    source = Counting(10)
    with pytest.raises(TypeError, match=f"run_concurrent\\(\\).*'{option}'"):
        asyncio.run(run_concurrent(double, iter(source), **{option: 3}))
    with pytest.raises(TypeError, match=f"run_concurrent_sync\\(\\).*'{option}'"):
        run_concurrent_sync(double, iter(source), **{option: 3})
    assert source.pulled == 0


async def test_non_iterable_items_raise_type_error() -> None:
    with pytest.raises(TypeError, match="items"):
        await run_concurrent(double, 12, progress_bar=False)  # type: ignore[call-overload]


# --- sync wrapper ---------------------------------------------------------------------------


def test_run_concurrent_sync_from_sync_code() -> None:
    assert run_concurrent_sync(double, range(100), max_concurrent=3, progress_bar=False) == [
        2 * i for i in range(100)
    ]

    async def twice(x: Any) -> Any:
        return x * 2

    results = run_concurrent_sync(twice, ["a", None], progress_bar=False, return_exceptions=True)
    assert results[0] == "aa"
    assert isinstance(results[1], TypeError)


async def test_run_concurrent_sync_inside_a_loop_runs_in_a_loop_of_its_own() -> None:
    """A notebook cell: this thread's loop is busy, so the run gets a loop in another thread."""
    source = Counting(10)
    here = asyncio.get_running_loop()
    loops: set[asyncio.AbstractEventLoop] = set()

    async def double_elsewhere(x: int) -> int:
        loops.add(asyncio.get_running_loop())
        return await double(x)

    assert run_concurrent_sync(double_elsewhere, iter(source), progress_bar=False) == [
        2 * i for i in range(10)
    ]
    assert source.pulled == 10
    assert len(loops) == 1 and here not in loops
    assert next(iter(loops)).is_closed()


# --- amap: the pool, in completion order ----------------------------------------------------


async def test_amap_yields_outcomes_in_completion_order() -> None:
    gates = [asyncio.Event() for _ in range(5)]

    async def gated(x: int) -> int:
        await gates[x].wait()
        return x * 10

    order = [3, 0, 4, 1, 2]
    seen = []
    async with amap(gated, range(5), max_concurrent=5) as outcomes:
        for x in order:
            gates[x].set()
            seen.append(await anext(outcomes))
        assert [pair async for pair in outcomes] == []
    assert seen == [(x, x * 10) for x in order]


async def test_amap_holds_at_most_a_pools_worth_for_a_slow_consumer() -> None:
    source = Counting(200)
    in_flight = 0
    peak = 0

    async def no_await(x: int) -> int:  # finishes without yielding to the loop
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        in_flight -= 1
        return x

    async def slow_square(x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return x * x

    for fn in (no_await, slow_square):
        source, in_flight, peak = Counting(200), 0, 0
        consumed = 0
        async with amap(fn, iter(source), max_concurrent=4) as outcomes:
            async for _ in outcomes:
                consumed += 1
                for _ in range(10):  # a slow consumer: the workers get many turns
                    await asyncio.sleep(0)
                # Each worker holds one item at most, from pulling it to its outcome taken.
                assert source.pulled - consumed <= 4
        assert consumed == 200
        assert 1 <= peak <= 4


async def test_leaving_amap_early_cancels_the_calls_still_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = Tracker(delay=10, busy=3)
    source = Counting(1000)

    async def fn(x: int) -> int:
        if x == 0:  # once the other workers (started one per item pulled) are all busy
            await tracker.all_busy.wait()
            return -1
        return await tracker(x)

    async with amap(fn, iter(source), max_concurrent=4) as outcomes:
        async for pair in outcomes:
            assert pair == (0, -1)
            break
    assert sorted(tracker.started) == [1, 2, 3]
    assert sorted(tracker.cancelled) == [1, 2, 3]
    assert tracker.active == 0
    assert other_tasks() == set()
    await asyncio.sleep(0.01)
    assert source.pulled == 4  # nothing pulled after the block was left
    assert asyncio_errors(caplog) == []


async def test_closing_iterate_concurrent_early_cancels_the_calls_still_running() -> None:
    tracker = Tracker(delay=10, busy=3)
    source = Counting(1000)

    async def fn(x: int) -> int:
        if x == 0:
            await tracker.all_busy.wait()
            return -1
        return await tracker(x)

    pairs = iterate_concurrent(fn, iter(source), max_concurrent=4)
    assert await anext(pairs) == (0, -1)
    await pairs.aclose()
    assert sorted(tracker.cancelled) == [1, 2, 3]
    assert other_tasks() == set()
    assert source.pulled == 4


@pytest.mark.parametrize("source_kind", ["list", "generator", "async"])
async def test_amap_gives_every_item_exactly_one_outcome(source_kind: str) -> None:
    rng = random.Random(source_kind)
    n = 300
    delays = [rng.choice([0, 0, 1, 3]) for _ in range(n)]
    fails = {i for i in range(n) if rng.random() < 0.2}

    async def fn(x: int) -> int:
        for _ in range(delays[x]):
            await asyncio.sleep(0)
        if x in fails:
            raise ValueError(x)
        return -x

    async def agen() -> AsyncIterator[int]:
        for i in range(n):
            if i % 7 == 0:
                await asyncio.sleep(0)
            yield i

    items: Any = {"list": list(range(n)), "generator": iter(range(n)), "async": agen()}
    seen: list[int] = []
    async with amap(fn, items[source_kind], max_concurrent=7, return_exceptions=True) as out:
        async for i, outcome in out:
            seen.append(i)
            if i in fails:
                assert isinstance(outcome, ValueError)
                assert outcome.args == (i,)
            else:
                assert outcome == -i
            if rng.random() < 0.3:  # now and then a slow consumer
                await asyncio.sleep(0)
    assert Counter(seen) == Counter(range(n))
    assert seen != sorted(seen)  # completion order, not input order


async def test_amap_raises_the_first_failure_after_the_outcomes_before_it() -> None:
    boom = ValueError("item 1")
    tracker = Tracker(delay=10)

    async def fn(x: int) -> int:
        if x == 0:
            return 0
        if x == 1:
            await asyncio.sleep(0)
            raise boom
        return await tracker(x)

    seen = []
    with pytest.raises(ValueError) as info:
        async with amap(fn, range(10), max_concurrent=3) as outcomes:
            async for pair in outcomes:
                seen.append(pair)
    assert info.value is boom
    assert seen == [(0, 0)]
    assert tracker.cancelled == tracker.started
    assert other_tasks() == set()


async def test_cancelling_an_amap_consumer_cancels_its_workers() -> None:
    tracker = Tracker(delay=10, busy=3)

    async def consume() -> None:
        async with amap(tracker, range(10), max_concurrent=3) as outcomes:
            async for _ in outcomes:
                pass

    task = asyncio.create_task(consume())
    await tracker.all_busy.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(tracker.cancelled) == [0, 1, 2]
    assert other_tasks() == set()


async def test_amap_checks_its_arguments_when_called_and_runs_once() -> None:
    with pytest.raises(TypeError, match="coro_fn"):
        amap(None, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="items"):
        amap(double, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrent"):
        amap(double, [1], max_concurrent=0)
    pool = amap(double, [1, 2])
    async with pool as outcomes:
        assert sorted([pair async for pair in outcomes]) == [(0, 2), (1, 4)]
    with pytest.raises(RuntimeError, match="once"):
        async with pool:
            pass


async def test_results_follow_the_items_not_their_len() -> None:
    class Liar:
        def __init__(self, length: int, actual: int) -> None:
            self.length, self.actual = length, actual

        def __len__(self) -> int:
            return self.length

        def __iter__(self) -> Iterator[int]:
            return iter(range(self.actual))

    assert await run_concurrent(double, Liar(3, 5), progress_bar=False) == [0, 2, 4, 6, 8]
    assert await run_concurrent(double, Liar(9, 2), progress_bar=False) == [0, 2]


async def test_run_concurrent_with_calls_that_never_yield() -> None:
    async def at_once(x: int) -> int:
        return x + 1

    results = await run_concurrent(at_once, iter(range(10_000)), max_concurrent=3)
    assert results == list(range(1, 10_001))


class _Shell:
    """What `IPython.get_ipython()` returns: a shell with its traitlets config (a mapping)."""

    def __init__(self, *sections: str) -> None:
        self.config: dict[str, dict[str, object]] = {key: {} for key in sections}


def test_a_notebook_with_ipywidgets_gets_a_bar_by_default(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`progress_bar=None` showed no bar in a notebook: its stderr is no terminal."""
    kernel, console = _Shell("IPKernelApp", "InteractiveShell"), _Shell("TerminalIPythonApp")
    (tmp_path / "ipywidgets").mkdir()
    (tmp_path / "ipywidgets" / "__init__.py").write_text("")
    assert not reporting._is_kernel_with_widgets(kernel)  # no ipywidgets installed here
    monkeypatch.syspath_prepend(str(tmp_path))
    assert reporting._is_kernel_with_widgets(kernel)
    assert not reporting._is_kernel_with_widgets(console)  # IPython in a terminal
    assert not reporting._is_kernel_with_widgets(None)  # IPython imported, no shell running
    assert not reporting._is_kernel_with_widgets(object())  # not a shell
    ipython = type(sys)("IPython")
    ipython.get_ipython = lambda: kernel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert reporting._show_bar_by_default()  # the kernel's stderr is no terminal
    monkeypatch.delitem(sys.modules, "IPython")
    assert reporting._show_bar_by_default() is reporting._stderr_is_terminal()
