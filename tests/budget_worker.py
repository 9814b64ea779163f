"""A process that spends a budget kept in Redis (the cross-process budget test):
`python tests/budget_worker.py REDIS_URL BASE_URL PROVIDER CAP ITEMS` prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys


async def _spend(redis_url: str, base_url: str, provider: str, cap: int, items: int) -> None:
    from llmclient import Budget, BudgetExceededError, client_for, run_concurrent

    budget = Budget(total_tokens=cap, name="shared")
    async with client_for(
        provider,
        "sim-model",
        base_url=base_url,
        limits=redis_url,
        budget=budget,
        max_tokens=10,
        max_concurrent=4,
    ) as client:
        prompts = [f"question number {i}" for i in range(items)]
        outcomes = await run_concurrent(client.generate_answer, prompts, return_exceptions=True)
        stats = client.stats
    answered = sum(isinstance(o, str) for o in outcomes)
    refused = sum(isinstance(o, BudgetExceededError) for o in outcomes)
    tokens = stats.prompt_tokens + stats.completion_tokens
    print(json.dumps({"answered": answered, "refused": refused, "tokens": tokens}), flush=True)


if __name__ == "__main__":
    url, base, provider, cap, items = sys.argv[1:6]
    asyncio.run(_spend(url, base, provider, int(cap), int(items)))
