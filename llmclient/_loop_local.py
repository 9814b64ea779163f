"""`LoopLocal`: one value per event loop, for objects built on asyncio primitives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LoopLocal"]

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """Makes its value with `factory()` on first use in each event loop and keeps the latest.

    asyncio primitives belong to the loop that created them, so a client used from two
    `asyncio.run` calls gets a fresh value in the second.
    """

    __slots__ = ("_factory", "_loop", "_value")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None

    def get(self) -> T:
        """The value for the running loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._value is None:
            self._value = self._factory()
            self._loop = loop
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
