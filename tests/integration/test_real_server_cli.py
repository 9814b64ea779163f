"""`llmclient probe` and `llmclient run` as subprocesses against the real llama.cpp server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import LLAMA_PARALLEL

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCLIENT_", "OPENAI_"))}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return subprocess.run(
        [sys.executable, "-m", "llmclient", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_probe_recommends_at_most_the_slots(llama_server: Any) -> None:
    common = ["probe", "--provider", "openai", "--model", llama_server.model]
    common += ["--base-url", llama_server.base_url, "--levels", "1,2,4,8", "--max-tokens", "16"]
    table = cli(*common)
    assert table.returncode == 0, table.stderr
    assert "LLMCLIENT_OPENAI_MAX_CONCURRENT=" in table.stdout
    report = cli(*common, "--json")
    assert report.returncode == 0, report.stderr
    recommended = json.loads(report.stdout)["recommended_max_concurrent"]
    assert 1 <= recommended <= LLAMA_PARALLEL


def test_run_answers_fifty_prompts_once_each(llama_server: Any, tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    output = tmp_path / "answers.jsonl"
    lines = [
        {"id": f"p{i}", "prompt": f"Write about item {i}.", "max_tokens": 12} for i in range(50)
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ["run", str(source), "-o", str(output), "--provider", "openai"]
    args += ["--model", llama_server.model, "--base-url", llama_server.base_url]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(line["id"] for line in lines)
    assert all("answer" in r and r["usage"]["completion_tokens"] <= 12 for r in records)
    again = cli(*args)  # a rerun finds everything answered and sends nothing
    assert again.returncode == 0, again.stderr
    assert len(output.read_text().splitlines()) == 50
