"""Limits that protect a server: concurrency slots (fixed or adaptive), rpm/tpm buckets, and
the per-process registry of shared endpoints."""

from llmclient.limits.adaptive import LatencyLimit, LimitAlgorithm
from llmclient.limits.concurrency import ConcurrencyLimiter
from llmclient.limits.endpoint import Endpoint, shared_endpoint
from llmclient.limits.rate import RateLimits, TokenBucket

__all__ = [
    "ConcurrencyLimiter",
    "Endpoint",
    "LatencyLimit",
    "LimitAlgorithm",
    "RateLimits",
    "TokenBucket",
    "shared_endpoint",
]
