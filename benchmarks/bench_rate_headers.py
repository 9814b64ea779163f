"""Pacing by the server's rate-limit headers: 429s and wall time, with and without.

A simulated server allows 20 requests per sliding 2 s (a 600 rpm account, scaled down) and
serves 4 at once in 50 ms; `OpenAIClient` (no rpm given) sends it 100 requests. Without
headers to learn from, the client finds the limit by hitting it (429, then Retry-After);
with OpenAI's `x-ratelimit-*` headers (or the IETF `RateLimit` ones) it paces itself.

    python benchmarks/bench_rate_headers.py [--runs 3] [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from _server import server_process

from llmclient import OpenAIClient, run_concurrent

SERVER = {"rpm": 20, "rpm_window": 2.0, "latency": 0.05, "parallel": 4}


async def run(url: str, requests: int) -> tuple[int, float]:
    """(429 answers, seconds) for `requests` calls."""
    async with OpenAIClient("sim-model", base_url=url + "/v1") as client:
        started = time.monotonic()
        await run_concurrent(
            client.generate_answer, [f"q{i}" for i in range(requests)], progress_bar=False
        )
        wall = time.monotonic() - started
        return client.stats.rate_limited, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("llmclient").setLevel(logging.ERROR)  # one warning per 429 otherwise
    print(
        f"{args.requests} requests, server: {SERVER['rpm']} per {SERVER['rpm_window']:g} s, "
        f"{SERVER['parallel']} slots, {SERVER['latency']:g} s each"
    )
    for headers, label in (
        ("none", "no rate headers (no pacing)"),
        ("openai", "x-ratelimit-* headers"),
        ("ietf", "IETF RateLimit headers"),
    ):
        for attempt in range(1, args.runs + 1):
            with server_process(**SERVER, rate_headers=headers) as url:
                limited, wall = asyncio.run(run(url, args.requests))
            print(f"{label:30} run {attempt}: {limited:3d} answers 429, wall {wall:5.2f} s")


if __name__ == "__main__":
    main()
