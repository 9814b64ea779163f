"""`llmclient run --batch`: the job through OpenAI's Batch API, into the same output file.

The requests still to do are uploaded in batch files (`llmclient.batch`); each id's result is
written, in the online runner's record format, as its batch ends. The uploaded files and the
batches are recorded in a state file next to the output (OUTPUT.jsonl.batch.json) as they are
made, so a rerun of the same command picks up the batches it already submitted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmclient import LLMError
from llmclient.cli import _jobfile as jobfile
from llmclient.cli import _online
from llmclient.cli import _resultfile as resultfile
from llmclient.cli._common import UsageError

if TYPE_CHECKING:
    from llmclient import BaseLLMClient
    from llmclient.batch import BatchResult


MAX_REQUESTS = 50_000  # requests OpenAI takes in one batch


def state_path(output: Path) -> Path:
    """Where the job's batches are recorded: next to the output."""
    return output.with_name(output.name + ".batch.json")


def check(args: argparse.Namespace) -> None:
    """Refuse what the Batch API cannot do, before anything is sent."""
    if args.provider != "openai":
        raise UsageError(
            f"--batch: the Batch API is OpenAI's; use --provider openai (got {args.provider})"
        )
    if args.base_url and (len(args.base_url) > 1 or "," in args.base_url[0]):
        raise UsageError("--batch: a batch job talks to one server; give one --base-url")
    if getattr(args, "budget", None) is not None:
        raise UsageError(
            "--batch: a --budget is counted per request as it is sent, which a batch job is not;"
            " run without --batch to keep to a budget"
        )
    if args.batch_size > MAX_REQUESTS:
        raise UsageError(
            f"--batch-size {args.batch_size}: OpenAI takes at most {MAX_REQUESTS} per batch"
        )


async def answer_all(
    client: BaseLLMClient, pending: _online._Pending, output: Path, args: argparse.Namespace
) -> _online.Tally:
    """Submit the pending items (or pick up their recorded batches), write each result."""
    from llmclient.batch import BatchJob, BatchRequest
    from llmclient.clients.openai import OpenAIClient

    assert isinstance(client, OpenAIClient)
    tally = _online.Tally()
    if not len(pending):
        return tally
    state = state_path(output)
    with resultfile.RecordWriter(output) as writer:
        async with client:
            job = BatchJob(
                client,
                state=state,
                retry=args.batch_retry,
                on_cancel=args.batch_cancelled,
                poll_interval=args.batch_poll,
                max_poll_interval=max(args.batch_poll, 60.0),
                max_requests=args.batch_size,
            )
            requests = (BatchRequest(item.id, item.prompt, item.params) for item in pending)
            try:
                await job.submit(requests)
                if job.batch_ids:
                    print(
                        f"batches {len(job.batch_ids)}, recorded in {state}; waiting for them "
                        "(if stopped, they run on: rerun the same command to pick them up)",
                        flush=True,
                    )
                async for result in job.results():
                    record = _record(client, result)
                    writer.write(resultfile.encode(record))
                    if "error" in record:
                        tally.failed += 1
                    else:
                        tally.done += 1
                        usage = record["usage"]
                        tally.tokens += usage["total_tokens"] if usage else 0
            except Exception:
                _online._stopped(tally, output)
                raise
    return tally


def _record(client: BaseLLMClient, result: BatchResult) -> dict[str, Any]:
    """The same record the online runner writes for this id."""
    from llmclient.batch import BatchRowError

    item = jobfile.Item(result.id, 0, "", {})
    if result.completion is not None:
        return _online._answer_record(item, result.completion, result.completion.latency)
    error = result.error
    if isinstance(error, LLMError):
        record = _online._error_record(item, error, error.elapsed or 0.0)
        if isinstance(error, BatchRowError):
            record["error"]["kind"] = error.code  # batch_expired, batch_cancelled
        return record
    key = client.settings.api_key
    secret = key.get_secret_value() if key is not None else ""
    assert error is not None
    return _online._internal_error_record(item, error, 0.0, secret)
