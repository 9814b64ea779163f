"""Requests-per-minute and tokens-per-minute limits on aiolimiter's leaky bucket.

Tokens are charged with an estimate before a request and settled against the usage the
provider reports after it; one request larger than the bucket is clamped to its size.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

__all__ = ["RateLimits", "TokenBucket"]


class TokenBucket(AsyncLimiter):
    """An `AsyncLimiter` that can also settle a charge after the fact.

    `adjust(delta)` adds (under-estimate) or returns (over-estimate) capacity without
    waiting, so the caller that already finished is never held up by the correction.
    """

    def clamp(self, amount: float) -> float:
        """The amount `acquire` accepts: oversized requests take the whole bucket."""
        return min(max(amount, 0.0), self.max_rate)

    def adjust(self, delta: float) -> None:
        """Charge `delta` more (positive) or refund it (negative), then wake waiters."""
        self._leak()
        self._level = max(self._level + delta, 0.0)
        self._wake_next()


def _per_minute(rpm: float) -> AsyncLimiter:
    """A bucket for `rpm` requests a minute; below one a minute, one per `60 / rpm` seconds.

    >>> _per_minute(0.5).time_period
    120.0
    """
    return AsyncLimiter(rpm, 60) if rpm >= 1 else AsyncLimiter(1, 60 / rpm)


class RateLimits:
    """Optional rpm and tpm buckets for one endpoint."""

    __slots__ = ("rpm", "tpm")

    def __init__(self, rpm: float | None, tpm: int | None) -> None:
        self.rpm = _per_minute(rpm) if rpm else None
        self.tpm = TokenBucket(tpm, 60) if tpm else None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.rpm is not None or self.tpm is not None

    async def acquire(self, estimated_tokens: float) -> float:
        """Wait for one request's worth of rpm and `estimated_tokens` of tpm; return the charge."""
        if self.rpm is not None:
            await self.rpm.acquire()
        if self.tpm is None:
            return 0.0
        charge = self.tpm.clamp(estimated_tokens)
        await self.tpm.acquire(charge)
        return charge

    def settle(self, charged: float, actual_tokens: int | None) -> None:
        """Correct the tpm charge once the provider reported the real usage."""
        if self.tpm is not None and actual_tokens is not None and charged:
            self.tpm.adjust(actual_tokens - charged)
