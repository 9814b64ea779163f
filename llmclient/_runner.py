"""`LoopThread`: an event loop in a daemon thread, on which synchronous code runs coroutines.

The sync clients (`llmclient.sync`) each own one, and `run_concurrent_sync` borrows one for a
call made while an event loop runs in the caller's thread (a notebook), so neither ever calls
`asyncio.run` on a thread whose loop is busy. The caller's thread blocks until the coroutine
ends; its result or exception (KeyboardInterrupt included) is returned or raised there.

Lifetime: the thread starts on first use and ends at `close()`, which lets `asyncio.run`'s
shutdown cancel what is left, close async generators (streams, and the connection pools of
`LoopLocal`) and the default executor. Threads still running at interpreter exit are closed
the same way by an `atexit` hook; in a child made by `os.fork()` a loop thread starts afresh
on next use (the parent's thread does not exist there).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["LoopThread", "run_in_new_loop"]

T = TypeVar("T")

_LIVE: weakref.WeakSet[LoopThread] = weakref.WeakSet()
_EXIT_WAIT = 5.0  # seconds each loop thread may take to shut down at interpreter exit


class LoopThread:
    """An event loop in a daemon thread named `name`; thread-safe; started on first `run`."""

    __slots__ = (
        "__weakref__",
        "_before_stop",
        "_closed",
        "_lock",
        "_loop",
        "_name",
        "_stop",
        "_thread",
    )

    def __init__(self, name: str, before_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        """`before_stop()`, if given, runs in the loop when it is asked to stop, however that
        happens (`close`, `close_soon`, interpreter exit), before what is left is cancelled."""
        self._name = name
        self._before_stop = before_stop
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        _LIVE.add(self)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    @property
    def thread(self) -> threading.Thread | None:
        """The thread the loop runs in, once started."""
        return self._thread

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run `awaitable` on the loop and wait for it: its result, or its exception raised here.

        Interrupted while waiting (Ctrl-C), it cancels the coroutine, waits for it to finish
        (a request gives its slot back) and re-raises.
        """
        try:
            loop = self._start()
        except BaseException:
            _discard(awaitable)
            raise
        done = threading.Event()
        future = asyncio.run_coroutine_threadsafe(_captured(awaitable, done), loop)
        try:
            ok, value = future.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError(f"{self._name} was closed while a call ran") from None
        except BaseException:
            future.cancel()
            done.wait()
            raise
        if ok:
            return value  # type: ignore[no-any-return]
        try:
            raise value
        finally:
            del value

    def close(self) -> None:
        """Stop the loop (what still runs is cancelled) and wait for its thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            thread = self._thread
            if thread is not None and thread is threading.current_thread():
                raise RuntimeError(f"{self._name} cannot be closed from its own thread")
            self._closed = True
        if thread is None:
            return
        self._request_stop()
        thread.join()

    def close_soon(self) -> None:
        """Ask the loop to stop without waiting (safe from any thread, the loop's own too)."""
        with self._lock:
            self._closed = True
        self._request_stop()

    def _request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_set_done, stop)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._thread is threading.current_thread():
                raise RuntimeError(
                    f"{self._name}: a blocking call from inside its own event loop would wait "
                    "for itself; await the async client there instead"
                )
            if self._loop is not None:
                return self._loop
            ready = threading.Event()
            thread = threading.Thread(target=self._main, args=(ready,), name=self._name)
            thread.daemon = True  # never holds up interpreter exit: the atexit hook closes it
            thread.start()
            ready.wait()
            assert self._loop is not None
            self._thread = thread
            return self._loop

    def _main(self, ready: threading.Event) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            started = _track_async_generators()
            ready.set()
            await self._stop
            if self._before_stop is not None:
                await self._before_stop()
            await _cancel_the_rest()
            await _close_in_order(started)

        asyncio.run(serve())

    def _forget(self) -> None:
        """In a forked child: the parent's thread is gone; start a new one on next use."""
        self._lock = threading.Lock()
        self._loop = self._stop = self._thread = None


async def _captured(awaitable: Awaitable[T], done: threading.Event) -> tuple[bool, Any]:
    """`(True, result)` or `(False, exception)`: a KeyboardInterrupt or SystemExit raised in
    the loop goes back to the caller instead of tearing the loop down. Cancellation stays."""
    try:
        return True, await awaitable
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        return False, error
    finally:
        done.set()


def _track_async_generators() -> weakref.WeakKeyDictionary[Any, None]:
    """The async generators this thread's loop starts from now on, oldest first (an outer
    generator starts before the ones it iterates); dead ones drop out on their own."""
    started: weakref.WeakKeyDictionary[Any, None] = weakref.WeakKeyDictionary()
    firstiter, finalizer = sys.get_asyncgen_hooks()

    def first(agen: Any) -> None:
        started[agen] = None
        if firstiter is not None:
            firstiter(agen)

    sys.set_asyncgen_hooks(firstiter=first, finalizer=finalizer)  # asyncio.run restores them
    return started


async def _cancel_the_rest() -> None:
    """Cancel every other task of the loop and wait for them, reporting any that raised
    something else, as `asyncio.run`'s shutdown does."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    loop = asyncio.get_running_loop()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during loop thread shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


async def _close_in_order(started: weakref.WeakKeyDictionary[Any, None]) -> None:
    """Close the async generators still open one at a time, outermost first.

    A dropped stream leaves a chain of them (the SDK's, httpx's, httpcore's), often in a
    reference cycle. `asyncio.run`'s shutdown closes all at once, in no order: an inner one
    closed while its outer one closes it too raises, and the loop logs "an error occurred
    during closing of asynchronous generator". Closed from the outside in, each outer one
    closes its own inner ones as it unwinds.
    """
    for agen in list(started):
        with contextlib.suppress(Exception):
            await agen.aclose()


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine that will never run, so Python does not warn it was never awaited."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


def run_in_new_loop(awaitable: Awaitable[T], name: str = "llmclient-run") -> T:
    """Run `awaitable` to the end in a new event loop in a new thread, then close that loop:
    `asyncio.run` for a thread whose own loop is running."""
    runner = LoopThread(name)
    try:
        return runner.run(awaitable)
    finally:
        runner.close()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, shut every loop thread down cleanly (connections closed)."""
    for runner in list(_LIVE):
        with runner._lock:
            thread = runner._thread
            runner._closed = True
        if thread is not None and thread is not threading.current_thread():
            runner._request_stop()
            thread.join(_EXIT_WAIT)


def _after_fork_in_child() -> None:
    for runner in list(_LIVE):
        runner._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
