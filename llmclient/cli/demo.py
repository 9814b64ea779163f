"""`llmclient demo`: the original failure and its fix, side by side, on a simulated Ollama.

The same workload runs three ways, each against a fresh server: unbounded fan-out with the raw
`ollama` SDK, `OllamaClient()` with its default profile, and `OllamaClient(max_concurrent="auto")`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llmclient.cli._common import add_verbose, milliseconds, positive_int, table
from llmclient.testing import SimulatedServer

HELP = "show unbounded fan-out against OllamaClient on a simulated Ollama server (~12 s)"
SLOTS, QUEUE, LATENCY = 4, 16, 0.1
MODEL = "sim-model"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one variant saw from the client side."""

    failed: int
    wall_s: float
    p50_s: float | None
    p95_s: float | None


Variant = Callable[[str, list[str]], Awaitable[Outcome]]


def add_parser(commands: Any) -> None:
    """Register `demo` on the top-level subparsers."""
    parser = commands.add_parser(
        "demo",
        help=HELP,
        description=HELP + ". Nothing leaves this machine: the server is simulated.",
    )
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=200,
        metavar="N",
        help="requests per variant (default: %(default)s)",
    )
    add_verbose(parser)
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Run the three variants and print the table and what it means."""
    print(
        f"Simulated Ollama server (no model runs): {SLOTS} slots (OLLAMA_NUM_PARALLEL={SLOTS}), "
        f"a queue of {QUEUE} (OLLAMA_MAX_QUEUE={QUEUE}),\n{LATENCY * 1000:.0f} ms per request, "
        f"{args.requests} requests per variant, a fresh server for each.\n",
        flush=True,
    )
    rows = asyncio.run(_run_variants(args.requests))
    headers = ("variant", "requests", "failed", "wall s", "p50 ms", "p95 ms")
    print(table((*headers, "peak in flight", "peak queued"), rows))
    print(_EXPLANATION.format(slots=SLOTS, queue=QUEUE))
    return 0


async def _run_variants(count: int) -> list[tuple[object, ...]]:
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(count)]
    variants: dict[str, Variant] = {
        "unbounded gather, raw ollama SDK": _unbounded,
        "OllamaClient()": _with_client({}),
        'OllamaClient(max_concurrent="auto")': _with_client({"max_concurrent": "auto"}),
    }
    rows: list[tuple[object, ...]] = []
    for name, variant in variants.items():
        async with SimulatedServer(parallel=SLOTS, max_queue=QUEUE, latency=LATENCY) as server:
            outcome = await variant(server.url, prompts)
            stats = server.stats
        p50, p95 = milliseconds(outcome.p50_s), milliseconds(outcome.p95_s)
        row = (name, count, outcome.failed, outcome.wall_s, p50, p95)
        rows.append((*row, stats.peak_in_flight, stats.peak_waiting))
    return rows


async def _unbounded(url: str, prompts: list[str]) -> Outcome:
    """The original `run_concurrent`: every request at once, straight to the server."""
    import ollama  # here, so that `llmclient --help` does not load the SDK

    latencies: list[float] = []

    async def ask(sdk: ollama.AsyncClient, prompt: str) -> None:
        sent = time.monotonic()
        await sdk.chat(MODEL, [{"role": "user", "content": prompt}])
        latencies.append(time.monotonic() - sent)

    started = time.monotonic()
    async with ollama.AsyncClient(host=url) as sdk:
        results = await asyncio.gather(*(ask(sdk, p) for p in prompts), return_exceptions=True)
    wall = time.monotonic() - started
    failed = sum(isinstance(r, BaseException) for r in results)
    latencies.sort()
    return Outcome(failed, wall, _percentile(latencies, 0.5), _percentile(latencies, 0.95))


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest rank, as `client.stats` computes its percentiles."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else None


def _with_client(options: dict[str, Any]) -> Variant:
    """The same naive fan-out, through an `OllamaClient` that owns the server's limits."""
    from llmclient import OllamaClient

    async def variant(url: str, prompts: list[str]) -> Outcome:
        started = time.monotonic()
        async with OllamaClient(MODEL, host=url, **options) as client:
            results = await asyncio.gather(
                *(client.generate_answer(p) for p in prompts), return_exceptions=True
            )
            stats = client.stats
        failed = sum(isinstance(r, BaseException) for r in results)
        return Outcome(failed, time.monotonic() - started, stats.latency_p50, stats.latency_p95)

    return variant


_EXPLANATION = """
failed: requests that ended in an error (unbounded: Ollama's 503 "server busy", not retried).
p50/p95: time on the wire of answered requests; peak in flight/queued: at the server.
Unbounded fan-out overfills the server's queue: what does not fit is refused, and what fits
waits in line. OllamaClient keeps {slots} requests on the wire (its Ollama profile), so nothing is
refused and nothing waits at the server; "auto" finds the limit from latency by itself.

This server was simulated. The same code runs against a real Ollama: start `ollama serve`, then
    OllamaClient("llama3.2")    # host from OLLAMA_HOST, default http://127.0.0.1:11434
and measure how many requests your server really serves at once with
    llmclient probe --provider ollama --model llama3.2"""
