"""The in-process backend: slots, rpm/tpm buckets and pause held in this event loop's memory."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from llmclient.limits.algorithms import Limit
from llmclient.limits.concurrency import ConcurrencyLimiter
from llmclient.limits.rate import RateLimits

__all__ = ["LOCAL", "LocalBackend", "LocalState"]


class LocalState:
    """An endpoint's admission state for the clients of one process and event loop."""

    __slots__ = ("_resume_at", "rates", "slots")

    def __init__(self, limit: int, rpm: float | None, tpm: int | None) -> None:
        self.slots = ConcurrencyLimiter(limit)
        self.rates = RateLimits(rpm, tpm)
        self._resume_at = 0.0

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self.slots.in_flight

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self.slots.waiting

    @property
    def rates_active(self) -> bool:
        """Whether an rpm or tpm limit is set."""
        return self.rates.active

    async def acquire_slot(self) -> None:
        """Wait for a slot, first come first served."""
        await self.slots.acquire()

    def release_slot(self, lease: object) -> None:
        """Give the slot back."""
        self.slots.release()

    def set_limit(self, limit: int) -> None:
        """Change how many are admitted at once."""
        self.slots.limit = limit

    def set_rates(self, rpm: float | None, tpm: int | None) -> None:
        """New buckets with these limits."""
        self.rates = RateLimits(rpm, tpm)

    async def reserve(self, tokens: float) -> float:
        """Wait for the rpm and tpm buckets."""
        return await self.rates.acquire(tokens)

    def settle(self, charged: float, used: int) -> None:
        """Settle the tpm charge."""
        self.rates.settle(charged, used)

    async def paused_for(self) -> float:
        """Seconds left of a pause."""
        return max(0.0, self._resume_at - asyncio.get_running_loop().time())

    def pause(self, seconds: float) -> None:
        """Extend the pause to `seconds` from now."""
        self._resume_at = max(self._resume_at, asyncio.get_running_loop().time() + seconds)


class LocalBackend:
    """Makes a fresh `LocalState` per endpoint (sharing happens in `Endpoint`'s registry)."""

    __slots__ = ()

    def state(self, key: Hashable, limit: int, rpm: float | None, tpm: int | None) -> LocalState:
        """A new in-memory state."""
        return LocalState(limit, rpm, tpm)

    def share(self, key: Hashable, limit: Limit) -> Limit:
        """The limit itself: this process is the whole fleet."""
        return limit

    def __repr__(self) -> str:
        return "LocalBackend()"


LOCAL = LocalBackend()
