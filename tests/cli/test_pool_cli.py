"""`llmclient run`, `probe` and `config` with several URLs: an endpoint pool."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from llmclient.testing import SimulatedServer
from tests.cli.helpers import assert_one_line_error, read_records, run_cli, write_jsonl

Factory = Callable[..., Awaitable[SimulatedServer]]


async def test_run_spreads_the_job_over_repeated_base_urls(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    one = await simulated_server_factory(parallel=1, latency=0.02)
    four = await simulated_server_factory(parallel=4, latency=0.02)
    rows = [{"id": f"q{i}", "prompt": f"question {i}", "max_tokens": 4} for i in range(50)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    result = await run_cli(
        "run", str(source), "-o", str(output), "--provider", "ollama", "--model", "sim-model",
        "--base-url", one.url, "--base-url", four.url, "--max-concurrent", "2",
    )  # fmt: skip
    assert result.code == 0, result
    assert len(read_records(output)) == 50
    assert one.stats.completed + four.stats.completed == 50
    assert one.stats.completed > 0 and four.stats.completed > 0
    assert one.stats.peak_in_flight == 1 and four.stats.peak_in_flight <= 2
    assert f"{one.url}: answered {one.stats.completed}, failed 0" in result.out
    assert f"{four.url}: answered {four.stats.completed}, failed 0" in result.out


async def test_probe_measures_each_server_of_a_comma_list(
    simulated_server_factory: Factory,
) -> None:
    servers = [await simulated_server_factory(parallel=n, latency=0.05) for n in (1, 2)]
    urls = ",".join(s.url for s in servers)
    args = ["probe", "--provider", "ollama", "--model", "sim-model", "--base-url", urls]
    result = await run_cli(*args, "--levels", "1,2", "--requests", "4", "--json")
    assert result.code == 0, result
    reports = json.loads(result.out)
    assert [report["endpoint"] for report in reports] == [s.url for s in servers]
    assert all(len(report["levels"]) == 2 for report in reports)
    assert [s.stats.peak_in_flight for s in servers] == [1, 2]

    text = await run_cli(*args, "--levels", "1", "--requests", "2")
    assert text.code == 0, text
    assert "EndpointPool({" in text.out and servers[1].url in text.out


async def test_config_shows_the_pool_and_refuses_a_bad_url_in_it() -> None:
    env = {"OLLAMA_HOST": "http://gpu1:11434,gpu2:11434"}
    shown = await run_cli("config", "--provider", "ollama", env=env)
    assert shown.code == 0, shown
    assert "http://gpu1:11434,http://gpu2:11434" in shown.out

    bad = await run_cli("config", "--provider", "ollama", env={"OLLAMA_HOST": "gpu1,htp://x"})
    message = assert_one_line_error(bad, 2)
    assert "OLLAMA_HOST='gpu1,htp://x'" in message and "'htp://x'" in message
