"""`llmclient demo`: the README's command runs to the end and shows both cases, row by row."""

from __future__ import annotations

import re

from tests.cli.helpers import run_cli

COLUMNS = 9  # variant, requests, failed, failed with, wall s, p50, p95, peak in flight, queued


def rows(out: str) -> dict[str, dict[str, str]]:
    """Each table row by its variant: the cells that are counts, and what failed."""
    found: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == COLUMNS and cells[1] == "40":
            name, _, failed, failed_with, *_, in_flight, queued = cells
            assert name not in found, f"two rows named {name}"
            found[name] = {
                "failed": failed,
                "failed with": failed_with,
                "in flight": in_flight,
                "queued": queued,
            }
    return found


async def test_demo_shows_the_warm_model_and_the_bounded_queue() -> None:
    # 40 requests take 0.5 s of service at 4 slots x 50 ms: a 0.2 s timeout is as overrun as
    # the default 0.5 s is by 120. What is asserted is what each server saw and what the client
    # got, never how long it took.
    result = await run_cli("demo", "--requests", "40", "--timeout", "0.2")
    assert result.code == 0, result
    table = rows(result.out)
    assert list(table) == [
        "raw ollama SDK, no timeout",
        "raw ollama SDK, timeout=0.2",
        "OllamaClient(max_concurrent=4, timeout=0.2)",
        'OllamaClient(max_concurrent="auto", timeout=0.2)',
        "raw ollama SDK",
        "OllamaClient(max_concurrent=4)",
        'OllamaClient(max_concurrent="auto")',
    ]
    # 1. warm model, unbounded wait: the raw SDK's requests queue at the server and, with a
    # timeout, fail as timeouts, never as 503s
    patient, hasty = table["raw ollama SDK, no timeout"], table["raw ollama SDK, timeout=0.2"]
    assert patient["failed"] == "0" and int(patient["queued"]) > 0
    assert patient["in flight"] == hasty["in flight"] == "4"
    assert int(hasty["failed"]) > 0 and hasty["failed with"] == "timeout"
    warm_client = table["OllamaClient(max_concurrent=4, timeout=0.2)"]
    assert warm_client == {"failed": "0", "failed with": "-", "in flight": "4", "queued": "0"}
    assert table['OllamaClient(max_concurrent="auto", timeout=0.2)']["failed"] == "0"

    # 2. bounded queue: the raw SDK overfills it (every slot, every place) and gets 503s
    refused = table["raw ollama SDK"]
    assert int(refused["failed"]) > 0 and refused["failed with"] == "503"
    assert (refused["in flight"], refused["queued"]) == ("4", "16")
    assert (
        table["OllamaClient(max_concurrent=4)"] == warm_client
    )  # 4 in flight, nothing queued, all answered
    assert table['OllamaClient(max_concurrent="auto")']["failed"] == "0"

    out = result.out
    assert "without bound (Ollama >= 0.11.5)" in out and "OLLAMA_MAX_QUEUE=16" in out
    assert "timeout=0.2 s is 4x the service time" in out
    assert "simulated" in out.lower() and "OLLAMA_HOST" in out


async def test_demo_rejects_a_timeout_of_zero() -> None:
    result = await run_cli("demo", "--timeout", "0")
    assert result.code == 2 and "expected a number above 0, got '0'" in result.err
