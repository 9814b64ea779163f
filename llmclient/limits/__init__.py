"""Limits that protect a server: limit algorithms (how many), endpoints (admission) and the
backends that store their state (in this process, or shared)."""

from llmclient.limits.algorithms import FixedLimit, LatencyLimit, Limit, Outcome
from llmclient.limits.backends import EndpointState, LimitBackend, LocalBackend
from llmclient.limits.budget import RetryBudget
from llmclient.limits.concurrency import ConcurrencyLimiter
from llmclient.limits.discovery import ServerCapacity
from llmclient.limits.endpoint import Endpoint, endpoint_key, shared_endpoint
from llmclient.limits.pool import EndpointPool, EndpointStats, PoolDispatcher
from llmclient.limits.rate import RateLimits, TokenBucket
from llmclient.limits.spending import Budget, BudgetSpent, BudgetTracker

__all__ = [
    "Budget",
    "BudgetSpent",
    "BudgetTracker",
    "ConcurrencyLimiter",
    "Endpoint",
    "EndpointPool",
    "EndpointState",
    "EndpointStats",
    "FixedLimit",
    "LatencyLimit",
    "Limit",
    "LimitBackend",
    "LocalBackend",
    "Outcome",
    "PoolDispatcher",
    "RateLimits",
    "RetryBudget",
    "ServerCapacity",
    "TokenBucket",
    "endpoint_key",
    "shared_endpoint",
]
