"""Limit algorithms: given each finished request, the next concurrency limit.

One small interface, `on_sample(rtt, in_flight, outcome) -> limit`, as in Netflix's
concurrency-limits, so algorithms are interchangeable and testable without a clock.
"""

from __future__ import annotations

import math
import warnings
from enum import Enum
from typing import Protocol, runtime_checkable

from llmclient._checks import check_int

__all__ = ["FixedLimit", "LatencyLimit", "Limit", "Outcome"]

_MIN_ROUND = 16
_MAX_PATIENCE = 32
_NOISE = 0.05  # share of the limit that latency noise alone can read as queued requests


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
        """The most the limit can ever be (helpers start that many workers)."""
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
    """Finds how many requests the server serves at once, from what one more does to latency.

    A server of S slots with a queue answers in its service time up to S in flight; past S,
    each extra request only waits, and latency grows by a service time per S extra. Comparing
    two limits' round medians, `hi * (1 - median_lo / median_hi)` estimates how many of `hi`'s
    requests were queued (TCP Vegas' queue estimate, as in Netflix concurrency-limits), and
    `hi * median_lo / median_hi` how many the server served at once: on such a server they
    read `hi - S` and `S` whenever `lo` is at most S.

    Samples are judged in rounds of `limit` requests (at least `_MIN_ROUND`), skipping those
    already in flight when the limit changed. After `patience` busy rounds the limit tries one
    more (twice as many at first: slow start) for a round: the trial stands if fewer than
    `trial_queue` of its requests queued (or 5% of the limit, what latency noise alone shows);
    otherwise the limit becomes the served-at-once estimate (at least the limit before the
    trial, below the trial) and the patience before the next trial doubles (up to
    `_MAX_PATIENCE`), so the limit rests at the server's slots.
    Against the no-load latency (the lowest round median; re-measured by a round run alone at
    `min_limit`), a round with more than `max_queue` queued requests (or a third of the limit,
    for large limits) removes one at once, and two rounds in a row with at least `trial_queue`
    try one fewer: it stays there if one more queued clearly more than that (`_keep_down`),
    else the no-load latency is raised to what it measured (it was stale). A step down is
    retried at the next good round. A refusal or timeout (429, 503, timeout) cuts the limit
    by a quarter at once. `probe_queue=` is the old name of `trial_queue=` (deprecated).
    """

    __slots__ = (
        "_baseline",
        "_busy",
        "_crowded",
        "_good",
        "_level",
        "_patience",
        "_queued",
        "_return_to",
        "_round",
        "_skip",
        "_slow_start",
        "limit",
        "max_limit",
        "max_queue",
        "min_limit",
        "trial_queue",
    )

    def __init__(
        self,
        initial: int = 1,
        *,
        min_limit: int = 1,
        max_limit: int = 64,
        trial_queue: float = 0.5,
        max_queue: float = 1.5,
        probe_queue: float | None = None,
    ) -> None:
        if probe_queue is not None:
            warnings.warn(
                "LatencyLimit(probe_queue=) is deprecated: use trial_queue=",
                DeprecationWarning,
                stacklevel=2,
            )
            trial_queue = probe_queue
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError(
                f"need 1 <= min_limit <= initial <= max_limit, got {min_limit}, {initial}, "
                f"{max_limit}"
            )
        if not 0 < trial_queue <= max_queue:
            raise ValueError(f"need 0 < trial_queue <= max_queue, got {trial_queue}, {max_queue}")
        self.limit = initial
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.trial_queue = trial_queue
        self.max_queue = max_queue
        self._baseline = math.inf
        self._round: list[float] = []
        self._busy = 0
        self._crowded = False  # a sample of this round had more than min_limit in flight
        self._skip = 0  # samples still to skip: they were in flight when the limit changed
        self._good = 0  # consecutive busy rounds without a queue at this limit
        self._patience = 1  # good rounds needed before trying one more
        self._level: tuple[int, float] | None = None  # during a trial: the limit and its median
        self._slow_start = True  # trials double the limit until one fails
        self._queued = 0.0  # the last round's queue estimate at this limit
        self._return_to = 0  # after a step down: the limit it left, tried again next round

    @property
    def probe_queue(self) -> float:
        """The old name of `trial_queue`."""
        return self.trial_queue

    def on_sample(self, rtt: float, in_flight: int, outcome: Outcome) -> int:
        """Record one request; decide at the end of each round."""
        if outcome is Outcome.IGNORED:
            return self.limit
        if outcome is Outcome.DROPPED:
            self._level, self._slow_start, self._good, self._return_to = None, False, 0, 0
            self._set(max(self.min_limit, min(self.limit - 1, math.floor(self.limit * 0.75))))
            return self.limit
        if self._skip > 0:
            self._skip -= 1
            return self.limit
        self._round.append(rtt)
        self._busy += in_flight >= self.limit
        self._crowded = self._crowded or in_flight > self.min_limit
        if len(self._round) >= self._round_size():
            self._decide()
        return self.limit

    def _decide(self) -> None:
        median = sorted(self._round)[len(self._round) // 2]
        busy = self._busy * 2 >= len(self._round)
        if self.limit <= self.min_limit and not self._crowded:
            self._baseline = median
        else:
            self._baseline = min(self._baseline, median)
        if self._level is not None and not self._judge_trial(*self._level, median):
            return
        queued = _queued(self._baseline, self.limit, median)
        self._reset_round()
        if queued > self._overload():
            self._good = 0
            self._set(max(self.min_limit, self.limit - 1))
        elif busy:
            self._good += 1
            # two rounds in a row: one round's median alone is too noisy at a large limit
            down = min(queued, self._queued) >= self._allowance() and self.limit > self.min_limit
            self._queued = queued
            up = self._good >= (1 if self._return_to > self.limit else self._patience)
            if down or (up and self.limit < self.max_limit):
                self._try(median, self.limit - 1 if down else self._step_up())
        else:
            self._good = 0

    def _round_size(self) -> int:
        """Samples per round: a trial's compares latencies a request apart, so at a large
        limit (where one request is a small share of the latency) it takes more."""
        if self._slow_start:
            return max(self.limit, _MIN_ROUND // 2)
        if self._level is not None:
            return max(4 * self.limit, _MIN_ROUND)
        return max(self.limit, _MIN_ROUND)

    def _noise(self) -> float:
        """Queued requests that latency noise alone can show at this limit."""
        return self.limit * _NOISE

    def _allowance(self) -> float:
        return max(self.trial_queue, self._noise())

    def _keep_down(self) -> float:
        """Queued requests one more must show for a trial of one fewer to stay.

        Above the allowance at large limits (up to 0.75: one fewer then costs at most a
        quarter request of throughput), so latency noise does not walk the limit down, and a
        limit rests between the two thresholds instead of flipping.
        """
        return max(self._allowance(), min(0.75, 2 * self._noise()))

    def _overload(self) -> float:
        """Queued requests (against the no-load latency) that remove one at once, untried.

        A third of the limit (latency 1.5x the no-load one, Gradient2's tolerance) once that
        exceeds `max_queue`: a large limit reads a few percent of noise or of a slower machine
        as whole queued requests, so below this a round tries one fewer instead, back to back.
        """
        return max(self.max_queue, 2 * self._noise(), self.limit / 3)

    def _step_up(self) -> int:
        if self._return_to > self.limit:  # back where it served before a step down
            return self.limit + 1
        return min(self.max_limit, self.limit * 2 if self._slow_start else self.limit + 1)

    def _try(self, median: float, trial: int) -> None:
        """Run the next round at `trial`, remembering this limit and its median."""
        self._level = (self.limit, median)
        self._good = 0
        self._set(trial)

    def _judge_trial(self, level: int, level_median: float, median: float) -> bool:
        """Keep the trial limit or go back; True when the trial stands as a round of its own."""
        self._level = None
        trial = self.limit
        if trial < level:  # one fewer: stay there only if the level was queueing
            if _queued(median, level, level_median) < self._keep_down():
                self._baseline = max(self._baseline, min(median, level_median))
                self._set(level)
            else:
                self._return_to = level
                self._reset_round()
            return False
        returning = self._return_to >= trial
        self._return_to = 0
        if _queued(level_median, trial, median) < self._allowance():
            if not returning:
                self._patience = max(1, self._patience // 2)
            return True
        served = round(trial * level_median / median)
        if not returning:
            self._patience = min(self._patience * 2, _MAX_PATIENCE)
        self._slow_start = False
        self._set(min(max(level, served), trial - 1))
        return False

    def _set(self, limit: int) -> None:
        """Change the limit; skip the samples already in flight before the change."""
        self._skip = max(self.limit, limit) if limit != self.limit else 0
        self._queued = 0.0
        self.limit = limit
        self._reset_round()

    def _reset_round(self) -> None:
        self._round.clear()
        self._busy = 0
        self._crowded = False

    def __repr__(self) -> str:
        return f"LatencyLimit(limit={self.limit}, max_limit={self.max_limit})"


def _queued(unqueued: float, limit: int, median: float) -> float:
    """How many of `limit` requests waited, if a request alone takes `unqueued` (Vegas).

    >>> round(_queued(0.05, 6, 0.075), 6)  # 4 slots: 6 in flight take 1.5 service times
    2.0
    """
    return limit * (1 - unqueued / median) if median > 0 else 0.0
