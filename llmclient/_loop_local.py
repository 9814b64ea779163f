"""`LoopLocal`: one value per event loop, for objects built on asyncio primitives.

asyncio primitives and HTTP connection pools belong to the loop that created them, so a client
used from two `asyncio.run` calls needs a fresh value in the second. A value with a `close`
coroutine is closed inside its own loop: when the loop shuts down (`asyncio.run` closes the
async generators it knows), or when `aclose()` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LoopLocal"]

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """Makes its value with `factory()` on first use in each event loop and keeps the latest."""

    __slots__ = ("_close", "_closer", "_factory", "_loop", "_value")

    def __init__(
        self, factory: Callable[[], T], close: Callable[[T], Awaitable[None]] | None = None
    ) -> None:
        self._factory = factory
        self._close = close
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    def get(self) -> T:
        """The value for the running loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._value is None:
            value = self._factory()
            self._value, self._loop = value, loop
            self._closer = None if self._close is None else _close_with_loop(value, self._close)
        return self._value

    def current(self) -> T | None:
        """The value made in the running loop, or None (no loop, or none made yet)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._value if self._loop is loop else None

    def latest(self) -> T | None:
        """The most recently made value, whichever loop made it."""
        return self._value

    async def aclose(self) -> None:
        """Close the running loop's value now (a value of another loop closes with its loop)."""
        closer, self._closer = self._closer, None
        if closer is not None and self.current() is not None:
            await closer.aclose()
        self._value = self._loop = None


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
