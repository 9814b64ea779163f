"""`llmclient probe`: measure how many concurrent requests a service really serves in parallel.

Sends N requests at each concurrency level (no retries, so errors show), stops escalating at
the first errors, and recommends how many requests the server served at once (see
`llmclient.probing.recommend`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from llmclient.cli._common import (
    add_target,
    add_verbose,
    milliseconds,
    positive_int,
    require_model,
    table,
    target_settings,
)

if TYPE_CHECKING:
    from llmclient.probing import ProbeReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `probe`."""
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


def command(args: argparse.Namespace) -> int:
    """Probe every level of every server in turn, then print the tables (or JSON) and the
    recommendations; for several servers also the `EndpointPool` they add up to."""
    from llmclient.probing import probe

    settings = target_settings(args)
    model = require_model(settings)
    reports = [
        asyncio.run(
            probe(
                args.provider,
                model,
                base_url=url,
                levels=args.levels,
                requests=args.requests,
                max_tokens=args.max_tokens,
            )
        )
        for url in settings.base_urls
    ]
    if args.json:
        shown = [asdict(report) for report in reports]
        print(json.dumps(shown if settings.pool is not None else shown[0], indent=2))
        return 0
    for index, report in enumerate(reports):
        if index:
            print()
        _print_report(report)
    if settings.pool is not None:
        _print_pool(reports)
    return 0


def _print_pool(reports: list[ProbeReport]) -> None:
    limits = {report.endpoint: report.recommended_max_concurrent for report in reports}
    print(f"\npool of {len(reports)} servers; give each its own limit with:")
    print(f"EndpointPool({limits!r})")


def _print_report(report: ProbeReport) -> None:
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
        f"recommended max_concurrent: {best} (the most requests the server served at once: "
        f"req/s and p50 against level {min(lv.level for lv in levels)}'s p50); set it with:"
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
