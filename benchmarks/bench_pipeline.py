"""CPU per call of llmclient's own request path, with a provider that answers at once.

No network: a subclass of `OllamaClient` returns its completion without sending anything, so
what is measured is the pipeline (admission, slot, timeout, retry, stats) and request
building. Prints microseconds of CPU per `generate` call, best of several rounds.

    python benchmarks/bench_pipeline.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from llmclient import OllamaClient
from llmclient.types import Completion, Usage


class InstantOllama(OllamaClient):
    """Answers every chat request at once, without the network."""

    async def _chat(self, request: object) -> Completion:  # type: ignore[override]
        return Completion(text="ok", usage=Usage(1, 1))


async def cpu_per_call(calls: int) -> float:
    async with InstantOllama("m", host="127.0.0.1:9") as client:
        await client.generate("warm up")
        started = time.process_time()
        for _ in range(calls):
            await client.generate("hello")
        return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = [asyncio.run(cpu_per_call(args.calls)) for _ in range(args.rounds)]
    print(f"{args.calls} calls x {args.rounds} rounds, provider answers at once")
    print(
        f"CPU per generate() call: best {min(rounds) * 1e6:.1f} us, "
        f"worst {max(rounds) * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
