"""Measure how many concurrent requests a service really serves in parallel, and recommend a limit.

`probe()` sends N requests at each concurrency level (each attempted once, so errors show),
stops escalating at the first errors, and recommends how many requests the server served at
once (not queued), judged against the lowest level's latency. `llmclient probe` prints what
it returns.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmclient._checks import check_int
from llmclient.clients.base import BaseLLMClient
from llmclient.clients.registry import client_for
from llmclient.errors import ConfigurationError, LLMError
from llmclient.fanout import run_concurrent

__all__ = ["ProbeLevel", "ProbeReport", "probe", "recommend"]

DEFAULT_LEVELS = (1, 2, 4, 8, 16)


@dataclass(frozen=True, slots=True)
class ProbeLevel:
    """What one concurrency level measured."""

    level: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    wall_s: float
    throughput_rps: float
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The whole probe: every level measured, and the recommendation."""

    provider: str
    endpoint: str
    model: str
    levels: list[ProbeLevel]
    recommended_max_concurrent: int | None
    env: str | None  # the environment setting that applies the recommendation


async def probe(
    provider: str,
    model: str | None = None,
    *,
    levels: Sequence[int] = DEFAULT_LEVELS,
    requests: int | None = None,
    max_tokens: int = 32,
    **options: Any,
) -> ProbeReport:
    """Probe `provider`'s server level by level; `options` go to each client (`base_url`, ...).

    A warm-up request first loads the model and fails fast when the server is down; each
    level's client sends one more, untimed, so that opening its connection is not measured.
    `requests` per level defaults to 4 per concurrent request, at least 8.
    """
    _check_levels(levels, requests)
    async with client_for(provider, model, max_attempts=1, **options) as client:
        if not client.model:
            raise ConfigurationError(
                f"no model given: pass model=... or set LLMCLIENT_{provider.upper()}_MODEL"
            )
        model, endpoint = client.model, client.endpoint_name
        await client.generate("Say hello.", max_tokens=max_tokens)
    measured: list[ProbeLevel] = []
    for level in levels:
        count = requests or max(8, 4 * level)
        fixed = {**options, "max_concurrent": level, "share_limits": False, "max_attempts": 1}
        async with client_for(provider, model, **fixed) as client:
            await client.generate("Say hello.", max_tokens=max_tokens)  # opens its connection
            measured.append(await _measure(client, level, count, max_tokens))
        if measured[-1].errors:
            break
    best = recommend(measured)
    env = None if best is None else f"LLMCLIENT_{provider.upper()}_MAX_CONCURRENT={best}"
    return ProbeReport(provider, endpoint, model, measured, best, env)


async def _measure(client: BaseLLMClient, level: int, count: int, max_tokens: int) -> ProbeLevel:
    """`count` requests, `level` at a time, each attempted once."""

    async def ask(index: int) -> None:
        prompt = f"Probe {level}.{index}: write one short sentence about the number {index}."
        await client.generate(prompt, max_tokens=max_tokens)

    started = time.monotonic()
    outcomes = await run_concurrent(
        ask, range(count), max_concurrent=level, progress_bar=False, return_exceptions=True
    )
    wall = time.monotonic() - started
    stats = client.stats
    kinds = Counter(_kind(outcome) for outcome in outcomes if isinstance(outcome, BaseException))
    errors = sum(kinds.values())
    return ProbeLevel(
        level=level,
        requests=count,
        errors=errors,
        error_kinds=dict(kinds),
        wall_s=round(wall, 3),
        throughput_rps=round((count - errors) / wall, 2) if wall > 0 else 0.0,
        p50_s=stats.latency_p50,
        p95_s=stats.latency_p95,
    )


def _kind(outcome: BaseException) -> str:
    """An error's kind; anything that is not an LLMError is a bug and is raised."""
    if isinstance(outcome, LLMError):
        return str(outcome.kind)
    raise outcome


def _check_levels(levels: Sequence[int], requests: int | None) -> None:
    if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
        raise TypeError(f"levels={levels!r}: must be a non-empty sequence of ints")
    for level in levels:
        check_int("levels", level, 1)
    check_int("requests", requests, 1, optional=True)


def recommend(levels: Sequence[ProbeLevel]) -> int | None:
    """How many requests the server served at once, by Little's law, at the best level.

    A level L served `min(L, req/s x p50_1, L x p50_1 / p50_L)` requests at once, where p50_1
    is the lowest level's p50 (a request with no queue): throughput stops growing once L
    reaches the server's slots and latency grows instead, so both ratios stay at the slots
    past them. The recommendation is the most any error-free level served, rounded.

    >>> recommend([ProbeLevel(1, 8, 0, {}, 1.6, 5.0, 0.2, 0.2),
    ...            ProbeLevel(4, 16, 0, {}, 0.9, 17.8, 0.2, 0.2),
    ...            ProbeLevel(8, 32, 0, {}, 1.6, 20.0, 0.4, 0.4)])
    4
    """
    timed = [(level, level.p50_s) for level in levels if not level.errors and level.p50_s]
    if not timed:
        return None
    unqueued = min(timed, key=lambda pair: pair[0].level)[1]
    served = max(_served(level, p50, unqueued) for level, p50 in timed)
    return max(1, math.floor(served + 0.5))


def _served(level: ProbeLevel, p50: float, unqueued: float) -> float:
    """Requests in service at once at `level` (not waiting in the server's queue)."""
    by_throughput = level.throughput_rps * unqueued
    return min(level.level, by_throughput, level.level * unqueued / p50)
