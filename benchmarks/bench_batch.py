"""A Batch API job of many requests against the simulator (in its own process): the client's
time to check and upload them, to collect the results, and (`--memory`) its peak Python memory.

    python benchmarks/bench_batch.py [--requests 100000] [--memory]

The simulator answers every row at once (no per-row time), so the figures are the client's
work (building the request bodies, uploading, downloading and parsing the output files) and
the simulator's, not OpenAI's hours.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from pathlib import Path

from _server import server_process

from llmclient import BatchRequest, OpenAIClient, submit_batch_job


async def job(url: str, count: int, state: Path) -> int:
    requests = [BatchRequest(i, f"question number {i}", {"max_tokens": 8}) for i in range(count)]
    async with OpenAIClient("sim-model", base_url=url + "/v1") as client:
        started = time.perf_counter()
        batch = await submit_batch_job(client, requests, state=state, poll_interval=0.05)
        submitted = time.perf_counter()
        answered = len([r async for r in batch.results() if r.completion is not None])
        ended = time.perf_counter()
    print(f"requests {count}, batches {len(batch.batch_ids)}, answered {answered}")
    rate = count / (submitted - started)
    print(f"check + upload + create: {submitted - started:.2f}s ({rate:,.0f} req/s)")
    print(f"wait + download + parse: {ended - submitted:.2f}s")
    return answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument(
        "--memory", action="store_true", help="trace the peak memory (tracemalloc slows it)"
    )
    args = parser.parse_args()
    with server_process(latency=0.0) as url, tempfile.TemporaryDirectory() as tmp:
        if args.memory:
            tracemalloc.start()
        state = Path(tmp) / "bench.batch.json"
        asyncio.run(job(url, args.requests, state))
        print(f"state file: {state.stat().st_size / 1e6:.1f} MB")
        if args.memory:
            print(f"peak Python memory: {tracemalloc.get_traced_memory()[1] / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
