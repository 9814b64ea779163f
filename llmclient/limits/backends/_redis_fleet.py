"""`"auto"` fleet-wide: every process sends its samples to Redis; the one holding the leader
lease feeds them to its limit algorithm and publishes the limit, and every process admits by
the published limit (`FleetLimit`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.typing import EncodableT

from llmclient.limits.algorithms import LatencyLimit, Limit, Outcome
from llmclient.limits.backends._redis_conn import DOWN, reraise_cancel

if TYPE_CHECKING:
    from llmclient.limits.backends._redis_space import Space

__all__ = ["FleetLimit", "Leader"]

logger = logging.getLogger("llmclient")
_SAMPLES_KEPT = 10_000


class Leader:
    """This loop's part in steering the fleet's limit: its samples go out with the next batch;
    while it holds the leader lease it steers, otherwise it follows the published limit."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.steering: Limit | None = None  # the inner limit of a FleetLimit
        self.limit: int | None = None  # the fleet's limit, as last read or steered
        self._samples: list[str] = []

    def sample(self, rtt: float, in_flight: int, outcome: Outcome) -> None:
        """Send one finished request's sample to the leader, in the next batch."""
        self.space.running()
        self._samples.append(f"{rtt:.6f} {in_flight} {outcome.value}")
        self.space.pipe.kick.set()

    def take(self) -> list[tuple[EncodableT, ...]]:
        """The commands that send the samples taken since the last batch (none if none)."""
        samples, self._samples = self._samples, []
        if not samples:
            return []
        key, idle_ms = self.space.keys["samples"], self.space.idle_ms
        return [
            ("RPUSH", key, *samples),
            ("LTRIM", key, -_SAMPLES_KEPT, -1),
            ("PEXPIRE", key, idle_ms),
        ]

    async def lead(self) -> None:
        """While a fleet limit exists, steer it when holding the leader lease, else follow it."""
        space = self.space
        published: int | None = None
        while not space.closed.is_set():
            await space.nap(0.2)
            steering = self.steering
            if steering is None:
                continue
            try:
                lead = space.scripts["LEAD"]
                if await lead(keys=[space.leader_key], args=[space.me, space.lease_ms]):
                    published = await self._steer(steering, published)
                else:
                    published = None
                    value = await space.redis.hget(space.keys["conf"], "limit")
                    self.limit = int(value) if value else None
            except DOWN as error:
                reraise_cancel(error)

    async def _steer(self, steering: Limit, published: int | None) -> int:
        space = self.space
        raw = await space.redis.lpop(space.keys["samples"], _SAMPLES_KEPT) or []
        for line in raw if isinstance(raw, list) else [raw]:
            rtt, in_flight, outcome = (line.decode() if isinstance(line, bytes) else line).split()
            steering.on_sample(float(rtt), int(in_flight), Outcome(outcome))
        limit = steering.limit
        self.limit = limit
        if limit != published:
            async with space.redis.pipeline(transaction=False) as pipe:
                pipe.hset(space.keys["conf"], "limit", limit)
                pipe.pexpire(space.keys["conf"], space.idle_ms)
                await pipe.execute()
            logger.debug("shared limits: fleet concurrency limit now %d", limit)
            space.queue.resend()  # a SLOTS call grants what a higher limit frees
        return limit


class FleetLimit:
    """A limit algorithm run for the whole fleet: one process (the leader) feeds it everyone's
    samples and publishes its limit; every process admits by the published limit."""

    __slots__ = ("_leader", "inner")

    def __init__(self, inner: Limit, leader: Leader) -> None:
        self.inner = inner
        self._leader = leader
        leader.steering = inner

    @property
    def limit(self) -> int:
        """The fleet's limit as last published (the inner limit's until then)."""
        fleet = self._leader.limit
        return min(fleet, self.inner.max_limit) if fleet else self.inner.limit

    @property
    def max_limit(self) -> int:
        """The inner limit's ceiling."""
        return self.inner.max_limit

    def start_at(self, slots: int) -> None:
        """Start an adaptive inner limit at `slots` (within its bounds) until one is published."""
        inner = self.inner
        if isinstance(inner, LatencyLimit):
            inner.limit = max(inner.min_limit, min(slots, inner.max_limit))

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        """Send the sample to the leader; return the limit in force."""
        self._leader.sample(rtt, in_flight, outcome)
        return self.limit

    def __repr__(self) -> str:
        return f"FleetLimit({self.inner!r}, limit={self.limit})"
