"""Cost of `run_concurrent` per item, against a bare worker pool and one task per item.

Every variant maps `async def f(x): await asyncio.sleep(0); return x * 2` over `range(N)` at
`max_concurrent=M`, each run in its own subprocess so that peak RSS figures
(`ru_maxrss`, above the baseline taken right after `import llmclient`) don't contaminate
each other. Prints the best and the spread of µs per item and of peak RSS over the rounds.

    python benchmarks/bench_run_concurrent.py [--items 1000000] [--max-concurrent 100]
        [--rounds 3] [--reference-items N] [--variants run_concurrent,bare_pool,...]

Targets for run_concurrent with progress off: <= 8 µs per item, <= 50 MiB above baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

TARGET_US = 8.0
TARGET_MIB = 50.0


async def f(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


async def v_run_concurrent(n: int, m: int) -> list[Any]:
    from llmclient.fanout import run_concurrent

    return await run_concurrent(f, range(n), max_concurrent=m, progress_bar=False)


async def v_run_concurrent_bar(n: int, m: int) -> list[Any]:
    """Progress bar forced on; the child's stderr goes to /dev/null."""
    from llmclient.fanout import run_concurrent

    return await run_concurrent(f, range(n), max_concurrent=m, progress_bar=True)


async def v_run_concurrent_errors(n: int, m: int) -> list[Any]:
    """return_exceptions=True and a generator source (total unknown); no item fails."""
    from llmclient.fanout import run_concurrent

    return await run_concurrent(
        f, (x for x in range(n)), max_concurrent=m, progress_bar=False, return_exceptions=True
    )


async def v_bare_pool(n: int, m: int) -> list[Any]:
    """M workers pulling from one shared iterator, results stored by index; no features."""
    results: list[Any] = []
    source = enumerate(range(n))

    async def worker() -> None:
        for i, x in source:
            results.append(None)
            results[i] = await f(x)

    async with asyncio.TaskGroup() as tg:
        for _ in range(m):
            tg.create_task(worker())
    return results


async def v_task_per_item(n: int, m: int) -> list[Any]:
    """The old helper: one task per item up front, an asyncio.Semaphore(M) inside each."""
    semaphore = asyncio.Semaphore(m)

    async def guarded(x: int) -> int:
        async with semaphore:
            return await f(x)

    return await asyncio.gather(*(guarded(x) for x in range(n)))


VARIANTS: dict[str, Callable[[int, int], Awaitable[list[Any]]]] = {
    "run_concurrent": v_run_concurrent,
    "run_concurrent+bar": v_run_concurrent_bar,
    "run_concurrent+genexp+return_exc": v_run_concurrent_errors,
    "bare_pool": v_bare_pool,
    "task_per_item+semaphore": v_task_per_item,
}


def child(variant: str, n: int, m: int) -> None:
    """Run one variant once and print a JSON line with its figures."""
    import llmclient  # the baseline includes the package
    import llmclient.fanout  # noqa: F401

    gc.collect()
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn = VARIANTS[variant]

    async def main() -> tuple[float, list[Any]]:
        start = time.perf_counter()
        results = await fn(n, m)
        return time.perf_counter() - start, results

    elapsed, results = asyncio.run(main())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(results) == n and (n == 0 or results[-1] == 2 * (n - 1)), "wrong results"
    print(
        json.dumps({"us_per_item": elapsed / n * 1e6, "rss_mib": (peak_kib - baseline_kib) / 1024})
    )


def run_child(variant: str, n: int, m: int) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant]
    cmd += ["--items", str(n), "--max-concurrent", str(m)]
    out = subprocess.run(
        cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--max-concurrent", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="fresh subprocesses per variant")
    parser.add_argument(
        "--reference-items",
        type=int,
        default=None,
        help="N for task_per_item+semaphore (default: --items; it needs ~1.5 GiB per 10**6)",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child(args.child, args.items, args.max_concurrent)
        return

    names = [v for v in args.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    print(
        f"N={args.items:,} max_concurrent={args.max_concurrent} rounds={args.rounds} "
        f"python={sys.version.split()[0]} cpus={os.cpu_count()}"
    )
    header = f"{'variant':34} {'N':>10} | {'µs/item best':>12} {'median':>7} {'worst':>7}"
    header += f" | {'peak RSS MiB best':>17} {'worst':>7}"
    print(header)
    print("-" * len(header))
    for name in names:
        n = args.items
        if name == "task_per_item+semaphore" and args.reference_items is not None:
            n = args.reference_items
        runs = [run_child(name, n, args.max_concurrent) for _ in range(args.rounds)]
        us = [r["us_per_item"] for r in runs]
        mib = [r["rss_mib"] for r in runs]
        line = f"{name:34} {n:>10,} | {min(us):>12.2f} {statistics.median(us):>7.2f}"
        line += f" {max(us):>7.2f} | {min(mib):>17.1f} {max(mib):>7.1f}"
        if name == "run_concurrent":
            ok = min(us) <= TARGET_US and min(mib) <= TARGET_MIB
            line += f"  (target <= {TARGET_US:g} µs, <= {TARGET_MIB:g} MiB: "
            line += "met)" if ok else "NOT met)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
