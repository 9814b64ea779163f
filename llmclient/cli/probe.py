"""`llmclient probe`: measure how many concurrent requests a service really serves in parallel.

Sends N requests at each concurrency level (no retries, so errors show), stops escalating at
the first errors, and recommends the smallest level within 10% of the best throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from llmclient import LLMError, run_concurrent
from llmclient.cli._common import (
    add_target,
    add_verbose,
    make_client,
    milliseconds,
    positive_int,
    require_model,
    table,
)

if TYPE_CHECKING:
    from llmclient import BaseLLMClient

HELP = "measure the service's real concurrency capacity and recommend max_concurrent"
_WITHIN = 0.10  # a level is as good as the best when its throughput is within this share


def add_parser(commands: Any) -> None:
    """Register `probe` on the top-level subparsers."""
    parser = commands.add_parser("probe", help=HELP, description=HELP + ".")
    add_target(parser)
    parser.add_argument(
        "--levels",
        type=_levels,
        default=[1, 2, 4, 8, 16],
        metavar="1,2,4,...",
        help="concurrency levels to try, in order (default: 1,2,4,8,16)",
    )
    parser.add_argument(
        "--requests",
        type=positive_int,
        metavar="N",
        help="requests per level (default: 4 per concurrent request, at least 8)",
    )
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        default=32,
        metavar="T",
        help="max_tokens of each request (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_verbose(parser)
    parser.set_defaults(handler=command)


@dataclass(frozen=True, slots=True)
class Level:
    """What one concurrency level measured."""

    level: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    wall_s: float
    throughput_rps: float
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True, slots=True)
class Report:
    """The whole probe: every level measured, and the recommendation."""

    provider: str
    endpoint: str
    model: str
    levels: list[Level]
    recommended_max_concurrent: int | None
    env: str | None


def command(args: argparse.Namespace) -> int:
    """Probe every level, then print the table (or JSON) and the recommendation."""
    report = asyncio.run(_probe(args))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        _print_report(report)
    return 0


async def _probe(args: argparse.Namespace) -> Report:
    """A warm-up request (loads the model, fails fast when down), then each level in turn."""
    async with make_client(args, max_attempts=1) as client:
        model = require_model(client)
        endpoint = client.endpoint_name
        await client.generate("Say hello.", max_tokens=args.max_tokens)
    levels: list[Level] = []
    for level in args.levels:
        count = args.requests or max(8, 4 * level)
        levels.append(await _measure(args, level, count))
        if levels[-1].errors:
            break
    best = recommend(levels)
    env = None if best is None else f"LLMCLIENT_{args.provider.upper()}_MAX_CONCURRENT={best}"
    return Report(args.provider, endpoint, model, levels, best, env)


async def _measure(args: argparse.Namespace, level: int, count: int) -> Level:
    """`count` requests, `level` at a time, each attempted once."""
    options: dict[str, Any] = {"max_concurrent": level, "share_limits": False, "max_attempts": 1}
    async with make_client(args, **options) as client:
        started = time.monotonic()
        outcomes = await run_concurrent(
            lambda i: _ask(client, level, i, args.max_tokens),
            range(count),
            max_concurrent=level,
            progress_bar=False,
            return_exceptions=True,
        )
        wall = time.monotonic() - started
        stats = client.stats
    kinds = Counter(_kind(outcome) for outcome in outcomes if isinstance(outcome, BaseException))
    errors = sum(kinds.values())
    return Level(
        level=level,
        requests=count,
        errors=errors,
        error_kinds=dict(kinds),
        wall_s=round(wall, 3),
        throughput_rps=round((count - errors) / wall, 2) if wall > 0 else 0.0,
        p50_s=stats.latency_p50,
        p95_s=stats.latency_p95,
    )


async def _ask(client: BaseLLMClient, level: int, index: int, max_tokens: int) -> None:
    prompt = f"Probe {level}.{index}: write one short sentence about the number {index}."
    await client.generate(prompt, max_tokens=max_tokens)


def _kind(outcome: BaseException) -> str:
    """An error's kind; anything that is not an LLMError is a bug and is raised."""
    if isinstance(outcome, LLMError):
        return str(outcome.kind)
    raise outcome


def recommend(levels: list[Level]) -> int | None:
    """The smallest error-free level whose throughput is within 10% of the best one's."""
    clean = [level for level in levels if not level.errors]
    if not clean:
        return None
    best = max(level.throughput_rps for level in clean)
    return min(level.level for level in clean if level.throughput_rps >= (1 - _WITHIN) * best)


def _print_report(report: Report) -> None:
    levels, best, env = report.levels, report.recommended_max_concurrent, report.env
    print(
        f"probe of {report.endpoint}, model {report.model}: each request attempted once, no retries"
    )
    headers = ("level", "requests", "errors", "wall s", "req/s", "p50 ms", "p95 ms")
    rows = [
        (
            lv.level,
            lv.requests,
            lv.errors,
            lv.wall_s,
            lv.throughput_rps,
            milliseconds(lv.p50_s),
            milliseconds(lv.p95_s),
        )
        for lv in levels
    ]
    print(table(headers, rows))
    last = levels[-1]
    if last.errors:
        kinds = ", ".join(f"{kind} {n}" for kind, n in last.error_kinds.items())
        print(f"stopped at level {last.level}: errors ({kinds})")
    if best is None or env is None:
        print("no recommendation: every level had errors; the service refuses even 1 at a time")
        return
    print(
        f"recommended max_concurrent: {best} (the smallest level within "
        f"{_WITHIN:.0%} of the best throughput); set it with:"
    )
    print(env)


def _levels(text: str) -> list[int]:
    """argparse type: a comma-separated list of positive integers."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2,4,8, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"levels must be integers of at least 1, got {text!r}")
    return levels
