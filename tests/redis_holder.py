"""A process that takes slots in Redis and keeps them until killed (the SIGKILL test and
`benchmarks/bench_shared_limits.py`): `python tests/redis_holder.py URL LEASE SLOTS`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

HOLDER_KEY = ("http://127.0.0.1:9",)  # the endpoint key a holder takes its slots from


async def _hold(url: str, lease: float, slots: int) -> None:
    from llmclient.limits import FixedLimit, shared_endpoint
    from llmclient.limits.backends.redis import RedisBackend

    backend = RedisBackend(url, lease=lease)
    endpoint = shared_endpoint(HOLDER_KEY, "holder", FixedLimit(slots), None, None, backend)
    for _ in range(slots):
        await endpoint.acquire(0)
    print("holding", flush=True)
    await asyncio.sleep(3600)


def start_holder(url: str, lease: float, slots: int) -> subprocess.Popen[str]:
    """A process holding `slots` slots of `HOLDER_KEY` (limit `slots`) in the Redis at `url`,
    its heartbeat renewing them, until killed; returns once it holds them all."""
    command = [sys.executable, str(Path(__file__).resolve()), url, str(lease), str(slots)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != "holding":
        holder.kill()
        holder.wait(10)
        raise RuntimeError("the holder process did not take its slots")
    return holder


if __name__ == "__main__":
    asyncio.run(_hold(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
