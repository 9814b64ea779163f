"""`llmclient run --batch`: the job through the simulator's Batch API, into the online format;
killed after submitting, a rerun picks up its batches instead of paying twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import openai

from llmclient.testing import SimulatedServer
from tests.cli.helpers import assert_one_line_error, read_records, run_cli, start_cli, write_jsonl
from tests.cli.test_run import questions, run_args

Factory = Callable[..., Awaitable[SimulatedServer]]
BATCH = ("--batch", "--batch-poll", "0.01")


async def batch_server(factory: Factory) -> SimulatedServer:
    server = await factory(latency=0.001)
    server.batches.pace = 0.01
    return server


def batched(state: Path) -> list[str]:
    """The batch ids recorded in a state file so far."""
    if not state.exists():
        return []
    return [c["batch_id"] for c in json.loads(state.read_text())["chunks"] if c["batch_id"]]


def without_timing(records: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {r["id"]: {k: v for k, v in r.items() if k != "latency_s"} for r in records}


async def test_batch_writes_the_records_the_online_run_writes(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await batch_server(simulated_server_factory)
    source = write_jsonl(tmp_path / "in.jsonl", [*questions(7), {"id": 9, "prompt": "nine"}])
    online, batched = tmp_path / "online.jsonl", tmp_path / "batched.jsonl"
    result = await run_cli(*run_args(server, source, online, provider="openai"))
    assert result.code == 0, result
    requests_online = server.stats.by_path["/v1/chat/completions"]
    args = run_args(server, source, batched, *BATCH, "--batch-size", "3", provider="openai")
    result = await run_cli(*args)
    assert result.code == 0, result
    assert server.stats.by_path["/v1/chat/completions"] == requests_online  # none online
    assert len(server.batches.batches_created) == 3
    assert without_timing(read_records(batched)) == without_timing(read_records(online))
    assert "done 8, failed 0, skipped 0" in result.out
    assert "batches 3, recorded in" in result.out
    state = json.loads((tmp_path / "batched.jsonl.batch.json").read_text())
    assert [c["batch_id"] for c in state["chunks"]] == server.batches.batches_created
    again = await run_cli(*args)
    assert again.code == 0 and "done 0, failed 0, skipped 8" in again.out
    assert "batches" not in again.out  # nothing to wait for
    assert len(server.batches.batches_created) == 3


async def test_a_run_killed_after_submitting_is_picked_up_without_paying_twice(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await batch_server(simulated_server_factory)
    server.batches.pace = 0.5  # validating long enough for the kill to come first
    source = write_jsonl(tmp_path / "in.jsonl", questions(10))
    output = tmp_path / "out.jsonl"
    state = tmp_path / "out.jsonl.batch.json"
    args = run_args(server, source, output, *BATCH, "--batch-size", "4", provider="openai")
    process = await start_cli(*args)
    try:
        async with asyncio.timeout(30):
            while len(batched(state)) < 3:  # noqa: ASYNC110 (another process writes it)
                await asyncio.sleep(0.01)
    finally:
        process.kill()
        await process.wait()
    assert not output.exists() or not output.read_text()
    server.batches.pace = 0.01
    result = await run_cli(*args)
    assert result.code == 0, result
    assert len(server.batches.batches_created) == 3
    uploaded = [s for s in server.batches.files.values() if s.info["purpose"] == "batch"]
    assert len(uploaded) == 3
    assert sorted(r["id"] for r in read_records(output)) == sorted(f"q{i}" for i in range(10))
    assert all("answer" in r for r in read_records(output))


async def test_failed_rows_are_retried_online(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await batch_server(simulated_server_factory)
    server.batches.inject_row_error(2, status=503)
    source = write_jsonl(tmp_path / "in.jsonl", questions(5))
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output, *BATCH, provider="openai"))
    assert result.code == 0, result
    assert server.stats.by_path["/v1/chat/completions"] == 2
    assert len(read_records(output)) == 5 and all("answer" in r for r in read_records(output))


async def test_rows_of_a_cancelled_batch_get_error_records(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await batch_server(simulated_server_factory)
    server.batches.row_time = 0.05
    source = write_jsonl(tmp_path / "in.jsonl", questions(30))
    output = tmp_path / "out.jsonl"
    run = asyncio.create_task(run_cli(*run_args(server, source, output, *BATCH, provider="openai")))
    async with asyncio.timeout(20):
        while not server.batches.batches_created:  # noqa: ASYNC110 (the run submits it)
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    async with openai.AsyncOpenAI(api_key="x", base_url=server.openai_base_url) as sdk:
        await sdk.batches.cancel(server.batches.batches_created[0])
    result = await run
    assert result.code == 1
    records = read_records(output)
    assert len(records) == 30
    kinds = {r["error"]["kind"] for r in records if "error" in r}
    assert kinds == {"batch_cancelled"}
    assert "rerun with --retry-failed" in result.err


async def test_a_failed_batch_ends_the_run_with_one_line(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await batch_server(simulated_server_factory)
    server.batches.inject_batch_failure("token_limit_exceeded", "Enqueued token limit reached.")
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    result = await run_cli(
        *run_args(server, source, tmp_path / "o.jsonl", *BATCH, provider="openai")
    )
    line = assert_one_line_error(result, 1)
    assert "failed: token_limit_exceeded: Enqueued token limit reached" in line
    assert server.batches.batches_created[0] in line
    again = await run_cli(
        *run_args(server, source, tmp_path / "o.jsonl", *BATCH, provider="openai")
    )
    assert again.code == 0, again  # a rerun submits the rows again
    assert len(server.batches.batches_created) == 2


async def test_batch_needs_the_openai_provider(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await batch_server(simulated_server_factory)
    source = write_jsonl(tmp_path / "in.jsonl", questions(1))
    result = await run_cli(*run_args(server, source, tmp_path / "o.jsonl", "--batch"))
    assert "--batch: the Batch API is OpenAI's" in assert_one_line_error(result, 2)
    too_big = ("--batch", "--batch-size", "50001")
    result = await run_cli(
        *run_args(server, source, tmp_path / "o.jsonl", *too_big, provider="openai")
    )
    assert "--batch-size 50001: OpenAI takes at most 50000" in assert_one_line_error(result, 2)
    budgeted = ("--batch", "--budget", "1000")
    result = await run_cli(
        *run_args(server, source, tmp_path / "o.jsonl", *budgeted, provider="openai")
    )
    assert "--batch: a --budget is counted per request" in assert_one_line_error(result, 2)
    assert server.stats.requests == 0
