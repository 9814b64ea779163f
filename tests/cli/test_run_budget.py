"""`llmclient run --budget`: a job stops cleanly when its budget is spent (exit 3), keeps what
it answered, and a rerun with a larger budget finishes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from llmclient.cli._common import EXIT_BUDGET
from llmclient.testing import SimulatedServer
from tests.cli.helpers import read_records, run_cli, write_jsonl
from tests.cli.test_run import questions, run_args

Factory = Callable[..., Awaitable[SimulatedServer]]


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_a_spent_budget_stops_the_run_and_a_larger_one_finishes_it(
    tmp_path: Path, simulated_server_factory: Factory, provider: str
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01)
    source = write_jsonl(tmp_path / "in.jsonl", questions(40))  # 3 + 4 tokens estimated each
    output = tmp_path / "out.jsonl"
    args = run_args(server, source, output, provider=provider)

    first = await run_cli(*args, "--budget", "100")
    assert first.code == EXIT_BUDGET == 3, first
    records = read_records(output)
    assert 0 < len(records) < 40 and all("answer" in r for r in records)
    spent = sum(r["usage"]["total_tokens"] for r in records)
    assert spent <= 100
    assert "budget 'run' (total_tokens 100) reached" in first.err
    assert f"{40 - len(records)} id(s) not sent" in first.err
    assert "rerun with a larger --budget to continue" in first.err
    assert f"done {len(records)}, failed 0" in first.out

    again = await run_cli(*args, "--budget", "100")  # the answers so far count toward it
    assert again.code == EXIT_BUDGET, again
    assert len(read_records(output)) == len(records)

    last = await run_cli(*args, "--budget", "total_tokens=10000")
    assert last.code == 0, last
    ids = [r["id"] for r in read_records(output)]
    assert sorted(ids) == sorted(f"q{i}" for i in range(40))  # each once


async def test_a_bad_budget_is_a_usage_error_before_anything_is_sent(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory()
    source = write_jsonl(tmp_path / "in.jsonl", questions(2))
    result = await run_cli(*run_args(server, source, tmp_path / "o.jsonl"), "--budget", "-5")
    assert result.code == 2
    assert "--budget" in result.err and "total_tokens=-5:" in result.err
    assert server.stats.requests == 0
