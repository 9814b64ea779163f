"""`llmclient probe` end to end against simulated servers of known capacity."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from llmclient.testing import SimulatedServer
from tests.cli.helpers import run_cli

Factory = Callable[..., Awaitable[SimulatedServer]]


def probe_args(server: SimulatedServer, *extra: str) -> list[str]:
    base = ["probe", "--provider", "ollama", "--model", "sim-model", "--base-url", server.url]
    return [*base, *extra]


# Each level takes its requests x latency / slots; the default 4 requests per level put most of
# each level's requests in steady state. The default levels are seen in
# test_stops_escalating_at_the_first_errors.


async def test_four_slots_recommends_four(simulated_server_factory: Factory) -> None:
    # It said 8 before: level 4 loses the client's turnaround between requests, which level 8
    # hides in the server's queue, and that beat the 10% "as fast as the best" allowed. Now
    # level 8 reads 4 served at once from both req/s and p50 against level 2's p50.
    server = await simulated_server_factory(parallel=4, latency=0.2)
    result = await run_cli(*probe_args(server, "--levels", "2,4,8"))
    assert result.code == 0, result
    rows = [line.split() for line in result.out.splitlines() if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [2, 4, 8]
    assert (
        "recommended max_concurrent: 4 (the most requests the server served at once" in result.out
    )
    assert result.out.splitlines()[-1] == "LLMCLIENT_OLLAMA_MAX_CONCURRENT=4"
    assert server.stats.peak_in_flight == 4


async def test_one_slot_recommends_one_as_json(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(parallel=1, latency=0.1)
    result = await run_cli(*probe_args(server, "--requests", "6", "--levels", "1,2,4", "--json"))
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["recommended_max_concurrent"] == 1
    assert report["env"] == "LLMCLIENT_OLLAMA_MAX_CONCURRENT=1"
    assert [level["errors"] for level in report["levels"]] == [0] * 3
    assert report["levels"][0]["p50_s"] >= 0.1


async def test_stops_escalating_at_the_first_errors(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(parallel=2, max_queue=0, latency=0.05)
    result = await run_cli(*probe_args(server, "--requests", "8", "--json"))
    assert result.code == 0, result
    report = json.loads(result.out)
    levels = report["levels"]
    assert [level["level"] for level in levels] == [1, 2, 4]
    assert levels[-1]["errors"] > 0 and set(levels[-1]["error_kinds"]) == {"server_busy"}
    assert report["recommended_max_concurrent"] == 2
