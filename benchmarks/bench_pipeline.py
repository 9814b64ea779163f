"""CPU per call of llmclient's own request path, with a provider that answers at once.

No network: a subclass of `OllamaClient` returns its completion without sending anything, so
what is measured is the pipeline (admission, slot, timeout, retry, stats) and request
building. The baseline is the same stubbed answer behind a bare `asyncio.Semaphore` (what a
raw SDK plus a semaphore costs); the rounds of both are interleaved, so a busy machine slows
both alike. Prints microseconds of CPU per call (median and best of the rounds) and the
client's overhead over the baseline.

    python benchmarks/bench_pipeline.py [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine, Mapping

from llmclient import OllamaClient
from llmclient.types import Completion, Usage


class InstantOllama(OllamaClient):
    """Answers every chat request at once, without the network."""

    async def _chat(self, request: object) -> Completion:
        return Completion(text="ok", usage=Usage(1, 1))


async def stub_sdk_chat(messages: list[dict[str, str]]) -> Completion:
    """The stubbed SDK call of the baseline: answers at once, like `InstantOllama._chat`."""
    return Completion(text="ok", usage=Usage(1, 1))


async def raw_per_call(calls: int) -> float:
    semaphore = asyncio.Semaphore(4)

    async def generate(prompt: str) -> Completion:
        async with semaphore:
            return await stub_sdk_chat([{"role": "user", "content": prompt}])

    await generate("warm up")
    started = time.process_time()
    for _ in range(calls):
        await generate("hello")
    return (time.process_time() - started) / calls


async def client_per_call(calls: int) -> float:
    async with InstantOllama("m", host="127.0.0.1:9") as client:
        await client.generate("warm up")
        started = time.process_time()
        for _ in range(calls):
            await client.generate("hello")
        return (time.process_time() - started) / calls


def rounds_of(
    runs: Mapping[str, Callable[[int], Coroutine[None, None, float]]], calls: int, rounds: int
) -> dict[str, list[float]]:
    """CPU seconds per call of each run, one round of each in turn."""
    figures: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            figures[name].append(asyncio.run(run(calls)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    runs = {"raw SDK + semaphore": raw_per_call, "client.generate()": client_per_call}
    figures = rounds_of(runs, args.calls, args.rounds)
    print(f"{args.calls} calls x {args.rounds} interleaved rounds, provider answers at once")
    for name, rounds in figures.items():
        print(
            f"CPU per call, {name}: median {statistics.median(rounds) * 1e6:.1f} us, "
            f"best {min(rounds) * 1e6:.1f} us"
        )
    overheads = [c - r for r, c in zip(*figures.values(), strict=True)]
    print(
        f"client overhead over the baseline: median {statistics.median(overheads) * 1e6:.1f} us, "
        f"best {min(overheads) * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
