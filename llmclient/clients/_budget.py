"""A client's budget: the tracker it counts against, and the usage each kind of call settles."""

from __future__ import annotations

from llmclient.config import budget_from_env
from llmclient.limits.spending import Budget, BudgetTracker
from llmclient.types import Completion, Usage

__all__ = ["call_usage", "no_usage", "tracker_for"]


def tracker_for(budget: object, limits: object) -> BudgetTracker | None:
    """The client's budget tracker: `budget`'s, or the environment's (counted where the
    client's limits live: this process, or Redis)."""
    if budget is None:
        budget = budget_from_env()
    if budget is None or isinstance(budget, BudgetTracker):
        return budget
    if not isinstance(budget, Budget):
        raise TypeError(f"budget={budget!r}: must be a Budget, a BudgetTracker or None")
    return BudgetTracker(budget, limits)  # type: ignore[arg-type]


def call_usage(outcome: tuple[Completion, int, float]) -> Usage | None:
    """What a chat call settles: the usage its answer reported."""
    return outcome[0].usage


def no_usage(vectors: object) -> None:
    """Embeddings are charged their estimate: a batched request's usage is not split per call."""
    return None
