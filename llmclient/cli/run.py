"""`llmclient run`: the bulk job, INPUT.jsonl to OUTPUT.jsonl under the client's limits.

Resumable and crash-safe: a rerun skips ids already in the output, `--retry-failed` retries the
error records, and after `kill -9` the output still holds at most one whole record per id.
This module holds the options, the input and resume checks and the summary; the job itself is
in `_online` (or `_batch` for `--batch`), imported only when it runs, so `run --help` stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from llmclient import Budget, LLMError
from llmclient.cli import _jobfile as jobfile
from llmclient.cli import _resultfile as resultfile
from llmclient.cli._common import (
    EXIT_BUDGET,
    PROG,
    CommandError,
    UsageError,
    add_target,
    add_verbose,
    make_client,
    non_negative_float,
    non_negative_int,
    positive_int,
    print_error,
    require_model,
)

if TYPE_CHECKING:
    from llmclient import BaseLLMClient, Observer
    from llmclient.cli._online import Tally
    from llmclient.telemetry._prometheus import PrometheusServer

_SHOWN_PROBLEMS = 20  # malformed lines reported one by one before a count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `run`."""
    parser.add_argument("input", type=Path, metavar="INPUT.jsonl", help="one request per line")
    parser.add_argument("-o", "--output", type=output_path, required=True, metavar="OUTPUT.jsonl")
    add_target(parser)
    parser.add_argument("--max-concurrent", metavar="N|auto", help="requests on the wire at once")
    parser.add_argument("--rpm", type=float, help="requests per minute for this endpoint")
    parser.add_argument("--tpm", type=int, help="tokens per minute for this endpoint")
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        metavar="N",
        help="retries per request after the first attempt (default: the profile's, 4)",
    )
    parser.add_argument(
        "--budget",
        type=budget_spec,
        metavar="SPEC",
        help="stop before the job spends more: a number of tokens, or key=value pairs such as "
        "total_tokens=1e6,cost=5,input_price=0.15,output_price=0.6 (prices per million tokens); "
        "the answers already in the output count toward it; exit 3 when it is reached",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="try again the ids whose record is an error"
    )
    parser.add_argument(
        "--strict", action="store_true", help="refuse to start when any input line is malformed"
    )
    parser.add_argument(
        "--cache",
        metavar="PATH|URL",
        help="answer repeated requests from this SQLite file or Redis URL (see docs/cache.md)",
    )
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="N",
        help="serve Prometheus metrics at http://127.0.0.1:N/metrics while the job runs",
    )
    _add_batch_arguments(parser)
    add_verbose(parser)


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `run --batch` (the job itself is in `_batch`)."""
    group = parser.add_argument_group("OpenAI Batch API")
    group.add_argument(
        "--batch",
        action="store_true",
        help="send the job through OpenAI's Batch API (half price, answers within 24 h); "
        "the batches are recorded in OUTPUT.jsonl.batch.json, so a rerun picks them up",
    )
    group.add_argument(
        "--batch-retry",
        choices=("online", "batch", "none"),
        default="online",
        help="rows a batch answers with a retryable error (429, 5xx): asked again online "
        "under the client's limits, in a new batch, or kept as errors (default: %(default)s)",
    )
    group.add_argument(
        "--batch-cancelled",
        choices=("report", "resubmit"),
        default="report",
        help="rows of a cancelled batch: error records, or a new batch (default: %(default)s)",
    )
    group.add_argument(
        "--batch-poll",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="first wait between polls of a batch, growing to 60 s (default: %(default)s)",
    )
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=50_000,
        metavar="N",
        help="requests per batch, at most 50000 (default: %(default)s; files also stop at 200 MB)",
    )


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def output_path(text: str) -> Path:
    """argparse type: the path of a file; `out/` names a directory (Path would drop the slash
    and write a file named `out`)."""
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"{text!r} names a directory; give the path of a file, e.g. {text}output.jsonl"
        )
    return Path(text)


def budget_spec(text: str) -> Budget:
    """argparse type: a `Budget` named "run" from `--budget`'s text."""
    try:
        return Budget.parse(text, name="run")
    except LLMError as error:
        raise argparse.ArgumentTypeError(error.message.removeprefix("invalid argument: ")) from None
    except TypeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return port


def command(args: argparse.Namespace) -> int:
    """Check the input, resume from the output, answer the rest, print a summary."""
    from llmclient.cli import _online

    if os.path.realpath(args.output) == os.path.realpath(args.input):  # no error on a loop
        raise UsageError("the output file must not be the input file")
    if args.batch:
        from llmclient.cli import _batch

        _batch.check(args)
    scan = _checked_input(args.input, args.strict)
    metrics = _serve_metrics(args.metrics_port)
    try:
        client = _client(args, metrics.observer if metrics else None)
        existing = _resume(args.output, args.retry_failed)
        recorded = existing.answered | existing.failed
        pending = _online._Pending(args.input, {key for key in scan.lines if key not in recorded})
        started = time.monotonic()
        if args.batch:
            from llmclient.cli import _batch

            tally = asyncio.run(_batch.answer_all(client, pending, args.output, args))
        else:
            earlier = (existing.prompt_tokens, existing.completion_tokens)
            tally = asyncio.run(
                _online._answer_all(client, pending, args.output, args.verbose > 0, earlier)
            )
    finally:
        if metrics is not None:
            metrics.close()
    wall = time.monotonic() - started
    skipped = len(scan.lines) - len(pending)
    kept_errors = len(existing.failed & scan.lines.keys())
    _summary(tally, skipped, len(scan.malformed), kept_errors, wall)
    if not args.batch:  # a batch job's tokens are in the summary line above
        print(_online.throughput(client, wall))
    if client.settings.pool is not None:
        _pool_summary(client)
    if tally.budget is not None:
        left = len(pending) - tally.done - tally.failed
        print_error(
            f"{tally.budget.message}. {left} id(s) not sent; the answers so far are saved in "
            f"{args.output}: rerun with a larger --budget to continue"
        )
        return EXIT_BUDGET
    return 1 if tally.failed or kept_errors else 0


def _serve_metrics(port: int | None) -> PrometheusServer | None:
    """The Prometheus endpoint for `--metrics-port`, serving until the job ends."""
    if port is None:
        return None
    from llmclient.telemetry import serve_prometheus

    try:
        return serve_prometheus(port)
    except ImportError as error:
        raise UsageError(f"--metrics-port: {error}") from None
    except OSError as error:
        raise CommandError(
            f"127.0.0.1:{port}",
            f"cannot serve metrics ({error.strerror or error})",
            "choose another --metrics-port",
        ) from None


def _resume(output: Path, retry_failed: bool) -> resultfile.Existing:
    """The records already written, after repairing a torn tail and, if asked, dropping errors."""
    existing = resultfile.load(output)
    if existing.repaired_bytes:
        print(
            f"{PROG}: {output}: removed a torn last record ({existing.repaired_bytes} bytes) "
            "left by an interrupted run",
            file=sys.stderr,
        )
    if retry_failed and existing.failed:
        resultfile.drop_failed(output)
        existing.failed.clear()
    return existing


def _checked_input(path: Path, strict: bool) -> jobfile.Scan:
    """Scan the input; report malformed lines, refuse duplicates (and malformed, if strict)."""
    _check_regular(path)
    try:
        scan = jobfile.scan(path)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    if scan.malformed and strict:
        number, problem = scan.malformed[0]
        raise UsageError(
            f"{path}: {len(scan.malformed)} malformed line(s), the first at line {number}: "
            f"{problem} (--strict)"
        )
    for number, problem in scan.malformed[:_SHOWN_PROBLEMS]:
        print(f"{PROG}: {path}:{number}: skipped: {problem}", file=sys.stderr)
    if len(scan.malformed) > _SHOWN_PROBLEMS:
        print(f"{PROG}: ... and {len(scan.malformed) - _SHOWN_PROBLEMS} more", file=sys.stderr)
    if scan.duplicates:
        key, first, again = scan.duplicates[0]
        more = f" (and {len(scan.duplicates) - 1} more)" if len(scan.duplicates) > 1 else ""
        raise UsageError(
            f"{path}: duplicate id {key} on lines {first} and {again}{more}; ids must be unique"
        )
    return scan


def _check_regular(path: Path) -> None:
    """Refuse an input that is not a file (a device, a pipe): it is read twice, and a device
    such as /dev/zero never ends. A missing path or a directory is left to the scan's error."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UsageError(
            f"cannot read {path}: not a regular file — the input is read twice (a check, then "
            "the job); save it to a file first"
        )


def _client(args: argparse.Namespace, observer: Observer | None = None) -> BaseLLMClient:
    attempts = None if args.retries is None else args.retries + 1
    client = make_client(
        args,
        max_concurrent=args.max_concurrent,
        rpm=args.rpm,
        tpm=args.tpm,
        max_attempts=attempts,
        observer=observer,
        budget=args.budget,
        cache=args.cache,
    )
    require_model(client.settings)
    return client


def _pool_summary(client: BaseLLMClient) -> None:
    """One line per server of the pool: attempts answered and failed, and whether it is out."""
    for url, stats in client.endpoint_stats.items():
        health = "" if stats.healthy else f", out of the pool: {stats.problem}"
        print(f"  {url}: answered {stats.answered}, failed {stats.failed}{health}")


def _summary(tally: Tally, skipped: int, malformed: int, kept_errors: int, wall: float) -> None:
    print(
        f"done {tally.done}, failed {tally.failed}, skipped {skipped} (already in the output), "
        f"malformed {malformed}, tokens {tally.tokens}, wall {wall:.1f}s"
    )
    if tally.failed or kept_errors:
        count = tally.failed + kept_errors
        print_error(
            f"{count} id(s) have an error record; rerun with --retry-failed to try them again"
        )
