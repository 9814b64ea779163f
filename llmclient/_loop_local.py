"""`LoopLocal`: one value per event loop, for objects built on asyncio primitives.

asyncio primitives and HTTP connection pools belong to the loop that created them, so a client
used from two `asyncio.run` calls, in turn or at once from two threads, needs a value per loop.
A value with a `close` coroutine is closed inside its own loop: when the loop shuts down
(`asyncio.run` closes the async generators it knows), or when `aclose()` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LoopLocal"]

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """Makes its value with `factory()` on first use in each event loop; thread-safe.

    Values live as long as their loop; the one used last is read without a lock.
    """

    __slots__ = ("_close", "_closers", "_factory", "_last", "_lock", "_values")

    def __init__(
        self, factory: Callable[[], T], close: Callable[[T], Awaitable[None]] | None = None
    ) -> None:
        self._factory = factory
        self._close = close
        # (loop, value) of the latest use, swapped as one object so threads never mix them up
        self._last: tuple[asyncio.AbstractEventLoop, T] | None = None
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._closers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value for the running loop."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        with self._lock:
            value = self._values.get(loop)
        if value is None:  # only this loop's thread makes this loop's value
            value = self._factory()
            closer = None if self._close is None else _close_with_loop(value, self._close)
            with self._lock:
                self._values[loop] = value
                if closer is not None:
                    self._closers[loop] = closer
        self._last = (loop, value)
        return value

    def current(self) -> T | None:
        """The value made in the running loop, or None (no loop, or none made yet)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            return self._values.get(loop)

    def latest(self) -> T | None:
        """The most recently used value, whichever loop made it."""
        last = self._last
        return None if last is None else last[1]

    async def aclose(self) -> None:
        """Close the running loop's value now (a value of another loop closes with its loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._values.pop(loop, None)
            closer = self._closers.pop(loop, None)
            last = self._last
            if last is not None and last[0] is loop:
                self._last = None
        if closer is not None:
            await closer.aclose()


async def _closing(value: T, close: Callable[[T], Awaitable[None]]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await close(value)


def _close_with_loop(value: T, close: Callable[[T], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """An async generator, started in the running loop, whose closing closes `value`.

    The loop registers every async generator started in it and closes them when it shuts
    down, so `value` is closed in its own loop even if nobody calls `aclose()`. The body has no
    await before its first `yield`, so one `send(None)` runs it there without suspending.
    """
    closer = _closing(value, close)
    with contextlib.suppress(StopIteration):  # reached the first yield
        closer.__anext__().send(None)
    return closer
