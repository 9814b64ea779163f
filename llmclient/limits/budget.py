"""`RetryBudget`: how many retries of faults an endpoint can afford (gRPC retry throttling).

Each failed attempt spends a token, each success earns `refund` back; retries go out only
while more than half the tokens are left, so a dead server sees about one request per call
instead of `max_attempts` of them, and a healthy one with the odd fault retries freely.
"""

from __future__ import annotations

__all__ = ["RetryBudget"]


class RetryBudget:
    """A token bucket per endpoint: failures spend one, successes earn `refund` back.

    >>> budget = RetryBudget(tokens=4, refund=0.5)
    >>> budget.on_failure(); budget.on_failure(); budget.allows_retry()
    False
    >>> budget.on_success(); budget.allows_retry()
    True
    """

    __slots__ = ("max_tokens", "refund", "tokens")

    def __init__(self, tokens: float = 20.0, refund: float = 0.2) -> None:
        self.max_tokens = self.tokens = float(tokens)
        self.refund = refund

    def on_success(self) -> None:
        """An answered attempt earns back a fraction of a token."""
        self.tokens = min(self.max_tokens, self.tokens + self.refund)

    def on_failure(self) -> None:
        """A failed attempt (a fault, not back-pressure) spends a token."""
        self.tokens = max(0.0, self.tokens - 1.0)

    def allows_retry(self) -> bool:
        """Whether more than half the tokens are left."""
        return self.tokens > self.max_tokens / 2

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self.tokens:g}/{self.max_tokens:g}, refund={self.refund:g})"
