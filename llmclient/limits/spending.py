"""Token and cost budgets: `Budget` (the caps), `BudgetTracker` (what one budget has spent).

Each request is estimated before it is sent (as for tpm: prompt characters / 4, plus
`max_tokens` or 256 for the answer) and reserved against every budget that applies: the
client's own and those of the helper calls it runs under (`budgets_of`). A request whose
estimate does not fit waits while requests in flight hold part of the budget (they settle
from the usage they report, usually less than their estimate: the estimate if they report
none, nothing if they fail); when it still does not fit with none in flight, it is refused
with `BudgetExceededError`, and so is every later request of that tracker.

A tracker keeps its count in this process, or in Redis (`limits="redis://..."`), where every
process using the same budget name shares one count.

The value types live in `_spend_caps`, the tracker and its local store in `_spend_tracker`
(the Redis store in `backends/_redis_budget`), the hooks clients call in `_spend_hooks`;
every name is importable from here.
"""

from __future__ import annotations

from llmclient.limits._spend_caps import Budget, BudgetSpent
from llmclient.limits._spend_caps import Estimate as Estimate
from llmclient.limits._spend_hooks import budgets_of, hold, metered, metered_stream, under_budget
from llmclient.limits._spend_tracker import BudgetStore as BudgetStore
from llmclient.limits._spend_tracker import BudgetTracker
from llmclient.limits._spend_tracker import Reservation as Reservation
from llmclient.limits._spend_tracker import Reserved as Reserved
from llmclient.limits._spend_tracker import fits as fits

__all__ = [
    "Budget",
    "BudgetSpent",
    "BudgetTracker",
    "budgets_of",
    "hold",
    "metered",
    "metered_stream",
    "under_budget",
]
