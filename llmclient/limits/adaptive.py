"""Limit algorithms: given each request's latency and outcome, the next concurrency limit.

The interface is one method, `on_sample(rtt, in_flight, dropped) -> limit`, as in Netflix's
concurrency-limits, so algorithms are interchangeable and testable without a clock.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["LatencyLimit", "LimitAlgorithm"]

_MIN_ROUND = 4
_MAX_PATIENCE = 32


class LimitAlgorithm(Protocol):
    """Chooses the concurrency limit from samples of finished requests."""

    @property
    def limit(self) -> int:
        """The current limit."""
        ...

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        """Record one finished request; return the new limit.

        `rtt` is its time on the wire in seconds, `in_flight` how many requests (itself
        included) were on the wire when it finished, and `dropped` whether the server
        refused or timed it out because it was overloaded.
        """
        ...


class LatencyLimit:
    """Grows the limit while latency stays near the no-load latency; shrinks it when it does not.

    Samples are judged in rounds of `limit` requests. A round whose median latency stays within
    `tolerance` times the lowest latency seen, and that kept the limit busy, adds one slot; a
    round above `2 * tolerance - 1` times it (requests queue at the server) removes one; a
    refusal or timeout (429, 503, timeout) cuts the limit by a quarter at once (AIMD).
    A slot added and then taken back is a failed probe: each one doubles the number of good
    rounds needed before the next probe (up to `_MAX_PATIENCE`), so the limit rests at the
    server's capacity instead of see-sawing above it; a probe that holds halves it again.

    The no-load latency is the lowest round median (a single lucky request cannot skew it);
    a round run entirely at `min_limit` in flight measures it afresh, so a server that became
    slower is re-learnt instead of pinning the limit at its minimum. Rounds hold at least
    `_MIN_ROUND` samples.
    """

    __slots__ = (
        "_baseline",
        "_busy",
        "_crowded",
        "_good",
        "_patience",
        "_probing",
        "_round",
        "limit",
        "max_limit",
        "min_limit",
        "tolerance",
    )

    def __init__(
        self,
        initial: int = 1,
        *,
        min_limit: int = 1,
        max_limit: int = 64,
        tolerance: float = 1.3,
    ) -> None:
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError(
                f"need 1 <= min_limit <= initial <= max_limit, got {min_limit}, {initial}, "
                f"{max_limit}"
            )
        if tolerance <= 1:
            raise ValueError(f"tolerance={tolerance!r}: must be greater than 1")
        self.limit = initial
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.tolerance = tolerance
        self._baseline = math.inf
        self._round: list[float] = []
        self._busy = 0
        self._crowded = False  # a sample of this round had more than min_limit in flight
        self._good = 0  # consecutive good rounds at this limit
        self._patience = 1  # good rounds needed before adding a slot
        self._probing = False  # the last change added a slot that is not yet confirmed

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        """Record one request; decide at the end of each round."""
        if dropped:
            self.limit = max(self.min_limit, min(self.limit - 1, math.floor(self.limit * 0.75)))
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
        busy = self._busy * 2 >= len(self._round)
        if ratio > 2 * self.tolerance - 1:
            if self._probing:
                self._patience = min(self._patience * 2, _MAX_PATIENCE)
            self.limit = max(self.min_limit, self.limit - 1)
            self._good = 0
            self._probing = False
        elif ratio <= self.tolerance and busy:
            if self._probing:
                self._patience = max(1, self._patience // 2)
            self._good += 1
            self._probing = False
            if self._good >= self._patience and self.limit < self.max_limit:
                self.limit += 1
                self._good = 0
                self._probing = True
        else:
            self._good = 0
            self._probing = False
        self._reset_round()

    def _reset_round(self) -> None:
        self._round.clear()
        self._busy = 0
        self._crowded = False
