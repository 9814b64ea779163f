"""Embedding coalescing: 10,000 single-text `embed` calls, coalesced against one request each.

The simulated Ollama server (one slot, as Ollama runs embedding models, 2 ms a request) runs in
its own process. Prints server requests, inputs and wall time for both ways.

    python benchmarks/bench_embed_coalescing.py [--calls 10000] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from _server import server_process

from llmclient import OLLAMA_PROFILE, OllamaClient


async def embed_all(host: str, calls: int, batch_size: int, wait: float) -> tuple[float, int]:
    profile = OLLAMA_PROFILE.model_copy(
        update={"embed_batch_size": batch_size, "embed_batch_wait": wait, "share_limits": False}
    )
    started = time.perf_counter()
    async with OllamaClient("sim-embed", host=host, profile=profile) as client:
        vectors = await asyncio.gather(*(client.embed(f"text {i}") for i in range(calls)))
    elapsed = time.perf_counter() - started
    assert len(vectors) == calls
    return elapsed, client.stats.completed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--wait", type=float, default=0.01, help="batch window in seconds")
    args = parser.parse_args()
    with server_process(parallel=1, latency=0.002) as host:
        together, requests = asyncio.run(embed_all(host, args.calls, args.batch_size, args.wait))
        alone, single_requests = asyncio.run(embed_all(host, args.calls, 1, 0.0))
    bound = math.ceil(args.calls / args.batch_size) + 5
    print(f"{args.calls} single-text embed calls, simulated Ollama: 1 slot, 2 ms a request")
    print(f"{'way':<22}{'requests':>10}{'wall s':>10}")
    print(f"{'coalesced':<22}{requests:>10}{together:>10.2f}")
    print(f"{'one request each':<22}{single_requests:>10}{alone:>10.2f}")
    print(
        f"requests bound ceil(calls/batch)+5 = {bound}: {'met' if requests <= bound else 'MISSED'}"
    )
    print(f"speed-up: {alone / together:.1f}x (target: at least 10x)")


if __name__ == "__main__":
    main()
