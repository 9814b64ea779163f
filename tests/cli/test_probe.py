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


# Each level takes `--requests` x latency / slots: the levels below and above the answer are
# enough, and the default levels are seen in test_stops_escalating_at_the_first_errors.


async def test_four_slots_recommends_four_or_the_level_above(
    simulated_server_factory: Factory,
) -> None:
    # Levels 4 and 8 serve a 4-slot server equally fast, but at level 4 each round ends with
    # the client's turnaround, which level 8 hides in the server's queue: on a loaded machine
    # that gap can exceed the 10% the rule allows, and 8 is then the honest answer. Level 2,
    # half the throughput, must never be recommended.
    server = await simulated_server_factory(parallel=4, latency=0.5)
    result = await run_cli(*probe_args(server, "--requests", "8", "--levels", "2,4,8"))
    assert result.code == 0, result
    rows = [line.split() for line in result.out.splitlines() if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [2, 4, 8]
    recommended = int(result.out.splitlines()[-1].rpartition("=")[2])
    assert recommended in (4, 8)
    assert f"recommended max_concurrent: {recommended}" in result.out
    assert server.stats.peak_in_flight == 4


async def test_one_slot_recommends_one_or_two_as_json(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(parallel=1, latency=0.1)
    result = await run_cli(*probe_args(server, "--requests", "6", "--levels", "1,2,4", "--json"))
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["recommended_max_concurrent"] in (1, 2)
    assert (
        report["env"] == f"LLMCLIENT_OLLAMA_MAX_CONCURRENT={report['recommended_max_concurrent']}"
    )
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
