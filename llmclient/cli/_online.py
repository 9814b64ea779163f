"""`llmclient run` without `--batch`: each pending request answered under the client's limits,
its record written as soon as it is known (the arguments, input checks and summary are in `run`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmclient import BudgetExceededError, Completion, LLMError, run_concurrent
from llmclient.cli import _jobfile as jobfile
from llmclient.cli import _resultfile as resultfile
from llmclient.cli._common import PROG, CommandError

if TYPE_CHECKING:
    from llmclient import BaseLLMClient

INTERNAL_ERROR = "internal_error"  # error.kind of a record whose item hit an unexpected exception
_MESSAGE_LIMIT = 1000  # characters of an unexpected exception's text kept in its record
REPORT_INTERVAL = 60.0  # seconds between the -v progress lines

logger = logging.getLogger("llmclient")


@dataclass(slots=True)
class Tally:
    """What this run did."""

    done: int = 0
    failed: int = 0
    tokens: int = 0
    budget: BudgetExceededError | None = None  # the budget ran out: the rest is left to do


def throughput(client: BaseLLMClient, wall: float) -> str:
    """Tokens in and out, requests per second, retries and the limit in force, on one line."""
    stats = client.stats
    requests = stats.completed + stats.failed
    rate = requests / wall if wall > 0 else 0.0
    cached = f"; cache hits {stats.cache_hits}, misses {stats.cache_misses}"
    return (
        f"tokens in {stats.prompt_tokens}, out {stats.completion_tokens}; {rate:.1f} req/s; "
        f"retries {stats.retries}; concurrency limit {stats.concurrency_limit}"
        + (cached if stats.cache_hits or stats.cache_misses else "")
    )


class _Pending:
    """The requests still to do: sized (for the progress bar's ETA), read lazily.

    Only the ids the check saw are sent, each once: lines added to the input while the job runs
    wait for the next run (which checks them), and an id repeated by such an edit cannot get a
    second record.
    """

    def __init__(self, path: Path, todo: set[str]) -> None:
        self.path, self.todo, self.count = path, todo, len(todo)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[jobfile.Item]:
        try:
            yield from jobfile.items(self.path, self.todo)
        except OSError as error:
            raise CommandError(
                str(self.path),
                f"could not read it any more ({error.strerror or error})",
                "put it back, then rerun the same command to continue",
            ) from None


async def _answer_all(
    client: BaseLLMClient,
    pending: _Pending,
    output: Path,
    verbose: bool = False,
    earlier: tuple[int, int] = (0, 0),
) -> Tally:
    """Answer every pending item, writing each record as soon as it is known; with `verbose`,
    log the throughput every `REPORT_INTERVAL` seconds.

    When the client's budget runs out, the requests in flight finish and are written; the
    items not sent get no record (a rerun with a larger budget sends them). The `earlier`
    prompt and completion tokens of the output's answers count toward a budget kept in this
    process (one kept in Redis has counted them already)."""
    tally = Tally()
    if client.budget is not None and client.settings.limits == "local" and any(earlier):
        await client.budget.charge(*earlier)

    async def answer(item: jobfile.Item) -> None:
        if tally.budget is not None:
            return
        try:
            record, line = await _record(client, item)
        except BudgetExceededError as error:
            tally.budget = tally.budget or error
            return
        writer.write(line)
        if "error" in record:
            tally.failed += 1
        else:
            tally.done += 1
            tally.tokens += record["usage"]["total_tokens"] if record["usage"] else 0

    with resultfile.RecordWriter(output) as writer:
        async with client:
            reporter = asyncio.create_task(_report(client)) if verbose else None
            try:
                if len(pending):
                    await run_concurrent(
                        answer, pending, desc="run", unit="req", max_concurrent=client.max_workers
                    )
            except Exception:  # fatal LLMError, unwritable output, unreadable input, a bug
                _stopped(tally, output)
                raise
            finally:
                if reporter is not None:
                    reporter.cancel()
    return tally


async def _report(client: BaseLLMClient) -> None:
    """Log the throughput line every `REPORT_INTERVAL` seconds until cancelled."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(REPORT_INTERVAL)
        logger.info("run: %s", throughput(client, time.monotonic() - started))


async def _record(client: BaseLLMClient, item: jobfile.Item) -> tuple[dict[str, Any], bytes]:
    """The output record for one item and its line; errors that would fail every item (`fatal`)
    are raised.

    Any other exception becomes the item's error record: an `LLMError` with its kind, anything
    else (an answer JSON cannot hold included) as `internal_error`, logged with its traceback:
    one bad item must not end a job of 100,000. KeyboardInterrupt and CancelledError are not
    `Exception`s and still stop it.

    As many workers run as the client lets on the wire, so items are read as slots free up
    and `latency_s` barely includes waiting for a slot.
    """
    started = time.monotonic()
    try:
        completion = await client.generate(item.prompt, **item.params)
        record = _answer_record(item, completion, time.monotonic() - started)
        return record, resultfile.encode(record)
    except LLMError as error:
        if error.fatal:
            raise
        record = _error_record(item, error, time.monotonic() - started)
    except Exception as error:
        key = client.settings.api_key
        secret = key.get_secret_value() if key is not None else ""
        record = _internal_error_record(item, error, time.monotonic() - started, secret)
    return record, resultfile.encode(record)


def _answer_record(item: jobfile.Item, completion: Completion, latency: float) -> dict[str, Any]:
    usage = completion.usage
    return {
        "id": item.id,
        "answer": completion.text,
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "attempts": completion.attempts,
        "latency_s": round(latency, 3),
    }


def _error_record(item: jobfile.Item, error: LLMError, latency: float) -> dict[str, Any]:
    return {
        "id": item.id,
        "error": {
            "kind": str(error.kind),
            "message": error.message,
            "status_code": error.status_code,
        },
        "usage": None,
        "attempts": error.attempts,
        "latency_s": round(latency, 3),
    }


def _internal_error_record(
    item: jobfile.Item, error: Exception, latency: float, secret: str
) -> dict[str, Any]:
    """The record of an item that raised what llmclient does not expect (a bug to report), and
    its traceback logged at ERROR; neither holds the API key (`secret`)."""

    def scrubbed(text: str) -> str:
        return text.replace(secret, "***") if secret else text

    try:
        text = str(error)
        trace = "".join(traceback.format_exception(error)).rstrip()
    except Exception:  # an exception that cannot even say what it is
        text, trace = "", type(error).__name__
    logger.error(
        "id %s (line %d): unexpected %s, recorded as its error\n%s",
        item.key,
        item.line,
        type(error).__name__,
        scrubbed(trace),
    )
    if len(text) > _MESSAGE_LIMIT:
        text = text[:_MESSAGE_LIMIT] + "..."
    name = type(error).__name__
    return {
        "id": item.id,
        "error": {
            "kind": INTERNAL_ERROR,
            "message": scrubbed(f"{name}: {text}" if text else name),
            "status_code": None,
        },
        "usage": None,
        "attempts": None,
        "latency_s": round(latency, 3),
    }


def _stopped(tally: Tally, output: Path) -> None:
    """Before the one-line error: what was saved, and how to go on."""
    if tally.done or tally.failed:
        print(
            f"{PROG}: stopped after {tally.done} answered and {tally.failed} failed, saved in "
            f"{output}; rerun the same command to continue",
            file=sys.stderr,
        )
