"""Ray tasks sharing one limit through Redis: the server's peak equals the limit.

Starts a private redis-server, a simulated 4-slot server (in a child process) and a local
Ray cluster (`ray.init()`); 4 Ray tasks each make their own client with `max_concurrent=4`
and run their share of the requests. With `limits=<redis URL>` the server never sees more
than 4 at once; with per-process limits it sees 16 (printed for contrast). Exits with status
1 if the shared run goes over the limit or loses a request, so CI can run it.

    pip install ray && python benchmarks/bench_ray.py [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray
from _server import timed_server_process

from llmclient.testing.redis import RedisServer

LIMIT = 4
TASKS = 4


@ray.remote
def label(server_url: str, limits: str, prompts: list[str]) -> int:
    """One Ray task: its own client, its share of the prompts; returns how many failed."""
    from llmclient import OllamaClient, run_concurrent_sync

    client = OllamaClient("m", host=server_url, max_concurrent=LIMIT, limits=limits)
    answers = run_concurrent_sync(
        client.generate_answer, prompts, progress_bar=False, return_exceptions=True
    )
    return sum(isinstance(answer, BaseException) for answer in answers)


@ray.remote
def warm() -> None:
    """Import llmclient in a worker, so the timed runs do not pay for it."""
    import llmclient.clients.ollama  # noqa: F401


def run(limits: str, requests: int) -> tuple[dict[str, int], int, float]:
    prompts = [f"chunk {i}" for i in range(requests)]
    shares = [prompts[i::TASKS] for i in range(TASKS)]
    with timed_server_process(parallel=LIMIT, latency=0.05) as server:
        started = time.perf_counter()
        failed = sum(ray.get([label.remote(server.url, limits, share) for share in shares]))
        wall = time.perf_counter() - started
        report = server.report()
    return report, failed, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    ray.init(num_cpus=TASKS, include_dashboard=False, log_to_driver=False)
    ray.get([warm.remote() for _ in range(TASKS)])
    try:
        with RedisServer() as redis_server:
            shared, failed, wall = run(redis_server.url, args.requests)
        local, _, local_wall = run("local", args.requests)
    finally:
        ray.shutdown()
    print(f"{TASKS} Ray tasks x max_concurrent={LIMIT}, {args.requests} requests, 4-slot server")
    for name, report, seconds in (("redis", shared, wall), ("local", local, local_wall)):
        on_wire = report["peak_in_flight"] + report["peak_waiting"]
        print(
            f"  limits={name:5s}  peak on the wire {on_wire:3d}  completed {report['completed']}"
            f"  wall {seconds:.2f} s"
        )
    ok = (
        failed == 0
        and shared["completed"] == args.requests
        and shared["peak_in_flight"] == LIMIT
        and shared["peak_waiting"] == 0
    )
    print("shared limit held" if ok else "FAILED: the shared limit did not hold")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
