"""`llmclient run`: the throughput summary, the -v progress lines, and `--metrics-port`
(Prometheus /metrics on loopback for the length of the job)."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from llmclient.cli import _online
from llmclient.testing import SimulatedServer
from tests.cli.helpers import assert_one_line_error, closed_port, read_records, run_cli, write_jsonl
from tests.cli.test_run import questions, run_args

Factory = Callable[..., Awaitable[SimulatedServer]]


async def test_summary_gives_tokens_rate_retries_and_limit(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500")
    source = write_jsonl(tmp_path / "in.jsonl", questions(12))
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output, "--max-concurrent", "3"))
    assert result.code == 0, result
    records = read_records(output)
    tokens_in = sum(r["usage"]["prompt_tokens"] for r in records)
    tokens_out = sum(r["usage"]["completion_tokens"] for r in records)
    line = result.out.splitlines()[-1]
    found = re.fullmatch(
        r"tokens in (\d+), out (\d+); ([\d.]+) req/s; retries (\d+); concurrency limit (\d+)", line
    )
    assert found is not None, line
    assert (int(found[1]), int(found[2])) == (tokens_in, tokens_out)
    assert float(found[3]) > 0
    assert (int(found[4]), int(found[5])) == (1, 3)


async def test_verbose_logs_the_throughput_while_the_job_runs(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_online, "REPORT_INTERVAL", 0.02)
    server = await simulated_server_factory(latency=0.05, parallel=1)
    source = write_jsonl(tmp_path / "in.jsonl", questions(6))
    args = run_args(server, source, tmp_path / "out.jsonl", "--max-concurrent", "1", "-v")
    result = await run_cli(*args)
    assert result.code == 0, result
    progress = [line for line in result.err_lines if "run: tokens in" in line]
    assert progress and all("concurrency limit 1" in line for line in progress)
    quiet = await run_cli(*run_args(server, source, tmp_path / "again.jsonl"))
    assert "run: tokens in" not in quiet.err


def scrape(url: str) -> str | None:
    """The page at `url`, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # loopback only
            body: bytes = answer.read()
    except (urllib.error.URLError, ConnectionError):
        return None
    return body.decode()


def metric_lines(page: str, name: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith(name + "{")]


async def test_metrics_port_serves_prometheus_metrics_during_the_job(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.1, parallel=1)
    source = write_jsonl(tmp_path / "in.jsonl", questions(20))
    port = closed_port()
    url = f"http://127.0.0.1:{port}/metrics"
    args = run_args(server, source, tmp_path / "out.jsonl", "--max-concurrent", "1")
    job = asyncio.create_task(run_cli(*args, "--metrics-port", str(port)))
    page = None
    while not job.done():
        page = await asyncio.to_thread(scrape, url)
        if page is not None and metric_lines(
            page, "gen_ai_client_operation_duration_seconds_count"
        ):
            break
        await asyncio.sleep(0.01)
    result = await job
    assert result.code == 0, result
    assert page is not None, "no /metrics page while the job ran"
    assert metric_lines(page, "llmclient_requests_in_flight")
    (limit,) = metric_lines(page, "llmclient_concurrency_limit")
    assert limit.endswith(" 1.0") and 'gen_ai_provider_name="ollama"' in limit
    assert metric_lines(page, "gen_ai_client_token_usage_count")
    assert await asyncio.to_thread(scrape, url) is None  # served for the job's length only


async def test_a_metrics_port_in_use_is_a_one_line_error(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(2))
    output = tmp_path / "out.jsonl"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli(*run_args(server, source, output, "--metrics-port", str(port)))
    line = assert_one_line_error(result, 1)
    assert f"127.0.0.1:{port}: cannot serve metrics" in line and "--metrics-port" in line
    assert server.stats.requests == 0 and not output.exists()


@pytest.mark.parametrize("port", ["0", "65536", "http"])
async def test_a_bad_metrics_port_is_a_usage_error(tmp_path: Path, port: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(1))
    result = await run_cli(
        "run", str(source), "-o", str(tmp_path / "o.jsonl"), "--provider", "ollama",
        "--model", "m", "--metrics-port", port,
    )  # fmt: skip
    line = assert_one_line_error(result, 2)
    assert "--metrics-port" in line and port in line
