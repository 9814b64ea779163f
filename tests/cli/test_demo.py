"""`llmclient demo`: the README's command runs to the end and shows the three variants."""

from __future__ import annotations

import re

from tests.cli.helpers import run_cli


async def test_demo_prints_the_three_rows_and_exits_0() -> None:
    # 40 requests overfill the 4 slots + 16 queued places as the default 200 do, in a fifth
    # of the time; what is asserted is what each server saw, never how long it took
    result = await run_cli("demo", "--requests", "40")
    assert result.code == 0, result
    rows: dict[str, list[str]] = {}
    for line in result.out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 8 and cells[1] == "40":
            rows[cells[0]] = cells[1:]
    assert list(rows) == [
        "unbounded gather, raw ollama SDK",
        "OllamaClient()",
        'OllamaClient(max_concurrent="auto")',
    ]
    unbounded, default, auto = rows.values()
    assert int(unbounded[1]) > 0  # failed: the queue overflowed
    assert unbounded[-2:] == ["4", "16"]  # every slot and every place in the queue taken
    assert default[1] == auto[1] == "0"
    assert default[-2:] == ["4", "0"]  # 4 in flight, nothing queued at the server
    assert "simulated" in result.out.lower() and "OLLAMA_HOST" in result.out
