"""Retries by kind and the retry budget, against simulated servers that fail on purpose.

Two figures:

* a dead server (every answer a 500): how many requests 1,000 calls make. Without a budget it
  would be 1,000 x max_attempts (5,000); the budget keeps it near one request per call.
* a flaky, overloaded server (30% 503 "server busy", 10% 500, at random; ten seeds): how many
  of 200 calls fail. Back-pressure is retried until the deadline and faults within the budget, so
  the goal is none.

    python benchmarks/bench_retry.py
"""

from __future__ import annotations

import asyncio
import logging
import time

from llmclient import ConcurrencyProfile, LLMError, OllamaClient, RetryPolicy, run_concurrent
from llmclient.testing import SimulatedServer

# Short backoff so the benchmark takes seconds; attempt limits and budget as the defaults.
POLICY = RetryPolicy(initial_wait=0.01, max_wait=0.05, jitter=0.01)
PROFILE = ConcurrencyProfile(name="bench", max_concurrent=4, retry=POLICY)


async def run(fault_rates: dict[str, float], calls: int, seed: int = 7) -> tuple[int, int, float]:
    """(requests the server saw, calls that failed, seconds) for `calls` calls."""
    options = {"parallel": 4, "latency": 0.002, "fault_rates": fault_rates, "seed": seed}
    async with SimulatedServer(**options) as sim:
        async with OllamaClient("sim-model", host=sim.url, profile=PROFILE) as client:
            started = time.monotonic()
            outcomes = await run_concurrent(
                client.generate_answer,
                [f"q{i}" for i in range(calls)],
                progress_bar=False,
                return_exceptions=True,
            )
            wall = time.monotonic() - started
        failures = [o for o in outcomes if isinstance(o, LLMError)]
        budget = client._admission.latest().budget  # type: ignore[union-attr]
        if failures and len(failures) < 10:
            for error in failures:
                print(f"  failed after {error.attempts} attempts ({budget}): {error}")
        return sim.stats.by_path["/api/chat"], len(failures), wall


def main() -> None:
    logging.getLogger("llmclient").setLevel(logging.ERROR)  # one warning per retry otherwise
    requests, failed, wall = asyncio.run(run({"500": 1.0}, 1000))
    print(
        f"dead server (100% 500), 1000 calls: {requests} requests "
        f"({requests / 1000:.2f} per call; {POLICY.max_attempts} per call without a budget), "
        f"{failed} failed, {wall:.1f}s"
    )
    for seed in range(1, 11):
        requests, failed, wall = asyncio.run(run({"503": 0.3, "500": 0.1}, 200, seed))
        print(
            f"flaky server (30% 503, 10% 500, seed {seed}), 200 calls: {failed} failed, "
            f"{requests} requests ({requests / 200:.2f} per call), {wall:.1f}s"
        )


if __name__ == "__main__":
    main()
