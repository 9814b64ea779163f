"""Limit algorithms: given each finished request, the next concurrency limit.

One small interface, `on_sample(rtt, in_flight, outcome) -> limit`, as in Netflix's
concurrency-limits, so algorithms are interchangeable and testable without a clock.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Protocol, runtime_checkable

from llmclient._checks import check_int

__all__ = ["FixedLimit", "LatencyLimit", "Limit", "Outcome"]

_MIN_ROUND = 8
_MAX_PATIENCE = 32


class Outcome(Enum):
    """How a request ended, as a limit algorithm sees it."""

    SUCCESS = "success"  # answered: its latency is a sample
    DROPPED = "dropped"  # refused or timed out from overload (429, 503, timeout)
    IGNORED = "ignored"  # failed for a reason that says nothing about load (a 400, say)


@runtime_checkable
class Limit(Protocol):
    """Chooses how many requests may be on the wire at once."""

    @property
    def limit(self) -> int:
        """The current limit."""
        ...

    @property
    def max_limit(self) -> int:
        """The most the limit can ever be (helpers size their worker pools to it)."""
        ...

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        """Record one finished request; return the new limit.

        `rtt` is its time on the wire in seconds and `in_flight` how many requests (itself
        included) were on the wire when it finished.
        """
        ...


class FixedLimit:
    """A limit that never changes: `max_concurrent=N`."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        check_int("limit", limit, 1)
        self.limit = limit

    @property
    def max_limit(self) -> int:
        """Always the limit itself."""
        return self.limit

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        """Samples change nothing."""
        return self.limit

    def __repr__(self) -> str:
        return f"FixedLimit({self.limit})"


class LatencyLimit:
    """Adds a slot while it buys throughput at a bounded latency cost; removes it otherwise.

    Samples are judged in rounds of `limit` requests (at least `_MIN_ROUND`). A round that
    kept the limit busy with its median latency within `tolerance` times the no-load latency
    raises the limit (a probe): doubling it at first (slow start), one slot at a time after
    the first failed probe. The probe holds only if the next round's throughput (limit /
    median latency, by Little's law) beat the round before by `min_gain`: a server whose
    slots are full only queues the extra requests. A failed probe returns to the limit before
    it; a round above `max_ratio` times the no-load latency removes one slot, and a refusal or
    timeout (429, 503, timeout) cuts the limit by a quarter at once (AIMD). Each failed probe
    doubles the good rounds needed before the next (up to `_MAX_PATIENCE`), so the limit
    rests at capacity instead of see-sawing above it.

    The no-load latency is the lowest round median (a single lucky request cannot skew it);
    a round run entirely at `min_limit` in flight measures it afresh, so a server that became
    slower is re-learnt instead of pinning the limit at its minimum.
    """

    __slots__ = (
        "_baseline",
        "_before_probe",
        "_busy",
        "_crowded",
        "_good",
        "_patience",
        "_probing",
        "_round",
        "_slow_start",
        "limit",
        "max_limit",
        "max_ratio",
        "min_gain",
        "min_limit",
        "tolerance",
    )

    def __init__(
        self,
        initial: int = 1,
        *,
        min_limit: int = 1,
        max_limit: int = 64,
        tolerance: float = 1.5,
        max_ratio: float = 2.0,
        min_gain: float = 0.05,
    ) -> None:
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError(
                f"need 1 <= min_limit <= initial <= max_limit, got {min_limit}, {initial}, "
                f"{max_limit}"
            )
        if not 1 < tolerance <= max_ratio:
            raise ValueError(f"need 1 < tolerance <= max_ratio, got {tolerance}, {max_ratio}")
        self.limit = initial
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.tolerance = tolerance
        self.max_ratio = max_ratio
        self.min_gain = min_gain
        self._baseline = math.inf
        self._round: list[float] = []
        self._busy = 0
        self._crowded = False  # a sample of this round had more than min_limit in flight
        self._good = 0  # consecutive good rounds at this limit
        self._patience = 1  # good rounds needed before a probe
        self._probing = False  # the last change was a probe not yet judged
        self._before_probe = (0.0, initial)  # throughput and limit before the probe
        self._slow_start = True  # probes double the limit until one fails

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        """Record one request; decide at the end of each round."""
        if outcome is Outcome.IGNORED:
            return self.limit
        if outcome is Outcome.DROPPED:
            self.limit = max(self.min_limit, min(self.limit - 1, math.floor(self.limit * 0.75)))
            self._probing = self._slow_start = False
            self._good = 0
            self._reset_round()
            return self.limit
        self._round.append(rtt)
        if in_flight >= self.limit:
            self._busy += 1
        self._crowded = self._crowded or in_flight > self.min_limit
        if len(self._round) >= max(self.limit, _MIN_ROUND):
            self._decide()
        return self.limit

    def _decide(self) -> None:
        ordered = sorted(self._round)
        median = ordered[len(ordered) // 2]
        if self.limit <= self.min_limit and not self._crowded:
            self._baseline = median
        else:
            self._baseline = min(self._baseline, median)
        ratio = median / self._baseline if self._baseline > 0 else 1.0
        throughput = self.limit / median if median > 0 else math.inf
        busy = self._busy * 2 >= len(self._round)
        gained = throughput >= self._before_probe[0] * (1 + self.min_gain)
        if self._probing and (ratio > self.max_ratio or (busy and not gained)):
            self._patience = min(self._patience * 2, _MAX_PATIENCE)
            self.limit = self._before_probe[1]
            self._good = 0
            self._slow_start = False
        elif ratio > self.max_ratio:
            self.limit = max(self.min_limit, self.limit - 1)
            self._good = 0
        elif ratio <= self.tolerance and busy:
            if self._probing:
                self._patience = max(1, self._patience // 2)
            self._good += 1
            if self._good >= self._patience and self.limit < self.max_limit:
                self._before_probe = (throughput, self.limit)
                step = self.limit if self._slow_start else 1
                self.limit = min(self.max_limit, self.limit + step)
                self._good = 0
                self._probing = True
                self._reset_round()
                return
        else:
            self._good = 0
        self._probing = False
        self._reset_round()

    def _reset_round(self) -> None:
        self._round.clear()
        self._busy = 0
        self._crowded = False

    def __repr__(self) -> str:
        return f"LatencyLimit(limit={self.limit}, max_limit={self.max_limit})"
