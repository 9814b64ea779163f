"""The in-process backend: slots, rpm/tpm buckets and pause held in this process's memory.

Slots, the pause and the limit of an endpoint are one per process, shared by every thread and
event loop; the rpm/tpm buckets (aiolimiter's, which belong to one loop) are one per loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Hashable

from llmclient.limits.algorithms import FixedLimit, Limit
from llmclient.limits.concurrency import ConcurrencyLimiter
from llmclient.limits.rate import RateLimits

__all__ = ["LOCAL", "LocalBackend", "LocalState"]


class _Gate:
    """What the endpoint states of one key share across loops: slots, pause, adaptive limit."""

    __slots__ = ("limit", "loops", "resume_at", "slots")

    def __init__(self, limit: int) -> None:
        self.slots = ConcurrencyLimiter(limit)
        self.resume_at = 0.0  # time.monotonic() before which nothing new goes out
        self.limit: Limit | None = None  # the adaptive limit every loop steers by
        self.loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    @property
    def live(self) -> bool:
        """Whether a loop that uses it still runs (a closed loop's slots are dead)."""
        return any(not loop.is_closed() for loop in self.loops)


class LocalState:
    """An endpoint's admission state for the clients of one process (rates: of one loop)."""

    __slots__ = ("_gate", "rates")

    def __init__(
        self, limit: int, rpm: float | None, tpm: int | None, gate: _Gate | None = None
    ) -> None:
        self._gate = gate if gate is not None else _Gate(limit)
        self.rates = RateLimits(rpm, tpm)

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self._gate.slots.in_flight

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._gate.slots.waiting

    @property
    def rates_active(self) -> bool:
        """Whether an rpm or tpm limit is set."""
        return self.rates.active

    async def acquire_slot(self) -> None:
        """Wait for a slot, first come first served."""
        await self._gate.slots.acquire()

    def release_slot(self, lease: object) -> None:
        """Give the slot back."""
        self._gate.slots.release()

    def set_limit(self, limit: int) -> None:
        """Change how many are admitted at once."""
        self._gate.slots.limit = limit

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
        return self.pause_left()

    def pause_left(self) -> float:
        """Seconds left of a pause, without awaiting (the admission path's fast check)."""
        return max(0.0, self._gate.resume_at - time.monotonic())

    def pause(self, seconds: float) -> None:
        """Extend the pause to `seconds` from now."""
        gate = self._gate
        gate.resume_at = max(gate.resume_at, time.monotonic() + seconds)


class LocalBackend:
    """Gives the endpoints of one key, in every thread and loop of the process, one set of
    slots, one pause and one adaptive limit; a key whose loops have all closed starts afresh."""

    __slots__ = ("_gates", "_lock")

    def __init__(self) -> None:
        self._gates: dict[Hashable, _Gate] = {}
        self._lock = threading.Lock()

    def state(self, key: Hashable, limit: int, rpm: float | None, tpm: int | None) -> LocalState:
        """A state on `key`'s gate; a lower `limit` than the gate's lowers it for every loop."""
        with self._lock:
            gate = self._gate(key, limit)
            if limit < gate.slots.limit:
                gate.slots.limit = limit
        return LocalState(limit, rpm, tpm, gate)

    def share(self, key: Hashable, limit: Limit) -> Limit:
        """Fixed limits as they are (the shared slots count for every loop); the first
        adaptive limit of `key` for every later one, so the process steers by one."""
        if isinstance(limit, FixedLimit):
            return limit
        with self._lock:
            gate = self._gate(key, limit.limit)
            if gate.limit is None:
                gate.limit = limit
            return gate.limit

    def _gate(self, key: Hashable, limit: int) -> _Gate:
        """`key`'s gate, joined by the running loop (the lock is held)."""
        gate = self._gates.get(key)
        if gate is None or not gate.live:
            for stale in [k for k, g in self._gates.items() if not g.live]:
                del self._gates[stale]
            gate = self._gates[key] = _Gate(limit)
        gate.loops.add(asyncio.get_running_loop())
        return gate

    def __repr__(self) -> str:
        return "LocalBackend()"


LOCAL = LocalBackend()
