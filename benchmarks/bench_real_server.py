"""48 prompts against a real llama.cpp server (2 slots): naive gather vs `OpenAIClient`.

Compares an unbounded `asyncio.gather` over the raw `openai` SDK with `OpenAIClient` on its
local profile and with `max_concurrent="auto"`: throughput, p50 and p95 latency per request
(from the call to its answer, waits included). Builds the server on first use (see
scripts/real_server.py).

    python benchmarks/bench_real_server.py [--prompts 48] [--rounds 3] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai

from llmclient import OpenAIClient
from llmclient.types import percentile

ROOT = Path(__file__).resolve().parent.parent


def load_real_server() -> Any:
    spec = importlib.util.spec_from_file_location("real_server", ROOT / "scripts/real_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_server"] = module
    spec.loader.exec_module(module)
    return module


async def timed(call: Awaitable[Any], latencies: list[float]) -> None:
    started = time.perf_counter()
    await call
    latencies.append(time.perf_counter() - started)


Outcome = tuple[list[float], float | None]  # end-to-end latencies, on-wire p50 (client only)


async def naive(base_url: str, model: str, prompts: list[str], body: dict[str, Any]) -> Outcome:
    latencies: list[float] = []
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-local", max_retries=0) as sdk:
        await asyncio.gather(
            *(
                timed(
                    sdk.chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": p}],
                        max_tokens=body["max_tokens"],
                        extra_body={"ignore_eos": True},
                    ),
                    latencies,
                )
                for p in prompts
            )
        )
    return latencies, None


def with_client(limit: int | str | None) -> Callable[..., Awaitable[list[float]]]:
    async def run(
        base_url: str, model: str, prompts: list[str], body: dict[str, Any]
    ) -> list[float]:
        latencies: list[float] = []
        options: dict[str, Any] = {"share_limits": False}
        if limit is not None:
            options["max_concurrent"] = limit
        async with OpenAIClient(model, base_url=base_url, **options) as llm:
            params = {"max_tokens": body["max_tokens"], "provider_options": {"ignore_eos": True}}
            await asyncio.gather(*(timed(llm.generate(p, **params), latencies) for p in prompts))
        return latencies, llm.stats.latency_p50

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    prompts = [f"Write a sentence about topic {i}." for i in range(args.prompts)]
    body = {"max_tokens": args.max_tokens}
    variants = {
        "naive gather (raw SDK)": naive,
        "OpenAIClient (local, 4)": with_client(None),
        'OpenAIClient("auto")': with_client("auto"),
    }
    real_server = load_real_server()
    rows: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in variants}
    with real_server.start_server(parallel=2) as server:
        for _ in range(args.rounds):
            for name, run in variants.items():
                started = time.perf_counter()
                latencies, wire = asyncio.run(run(server.base_url, server.model, prompts, body))
                wall = time.perf_counter() - started
                latencies.sort()
                p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
                assert p50 is not None and p95 is not None
                rows[name].append((len(prompts) / wall, p50, p95, p50 if wire is None else wire))
    print(
        f"real llama.cpp server, 2 slots; {args.prompts} prompts x {args.max_tokens} tokens; "
        f"median of {args.rounds} rounds"
    )
    print(f"{'variant':<26}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'on-wire p50 ms':>16}")
    for name, samples in rows.items():
        tput, p50, p95, wire = (statistics.median(c) for c in zip(*samples, strict=True))
        print(f"{name:<26}{tput:>8.1f}{p50 * 1000:>9.0f}{p95 * 1000:>9.0f}{wire * 1000:>16.0f}")
    print("p50/p95: from the call to its answer (waits included); on-wire: time at the server")


if __name__ == "__main__":
    main()
