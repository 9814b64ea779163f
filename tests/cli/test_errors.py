"""The failure contract of every command: usage errors exit 2, expected failures exit 1,
each with one line on stderr and never a traceback; `--help` works everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmclient import __version__
from tests.cli.helpers import assert_one_line_error, closed_port, run_cli, write_jsonl

COMMANDS = ["demo", "probe", "run", "config", "simulate"]


async def test_help_on_every_command() -> None:
    top = await run_cli("--help")
    assert top.code == 0 and all(name in top.out for name in COMMANDS)
    version = await run_cli("--version")
    assert (version.code, version.out) == (0, f"llmclient {__version__}\n")
    for command in COMMANDS:
        result = await run_cli(command, "--help")
        assert result.code == 0 and result.out.startswith(f"usage: llmclient {command}"), command


USAGE_ERRORS = [
    [],
    ["bogus"],
    ["probe", "--model", "m"],
    ["probe", "--provider", "vllm"],
    ["probe", "--provider", "ollama", "--levels", "1,two"],
    ["probe", "--provider", "ollama", "--requests", "0"],
    ["run", "in.jsonl", "--provider", "ollama"],
    ["run", "missing.jsonl", "-o", "out.jsonl", "--provider", "ollama", "--model", "m"],
    ["run", "in.jsonl", "-o", "out.jsonl", "--provider", "ollama", "--retries", "-1"],
    ["run", "in.jsonl", "-o", "o.jsonl", "--provider", "ollama", "--max-concurrent", "x"],
    ["config", "--provider", "openai", "--api-key", "sk-secret"],
    ["simulate", "--fault", "boom=0.1"],
    ["simulate", "--fault", "500=0.7", "--fault", "drop=0.7"],
    ["simulate", "--parallel", "0"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=lambda args: " ".join(args) or "(none)")
async def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "p"}])
    in_tmp = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    line = assert_one_line_error(await run_cli(*in_tmp), 2)
    assert line.startswith("llmclient") and "sk-secret" not in line


async def test_missing_model_is_a_usage_error(tmp_path: Path) -> None:
    result = await run_cli("probe", "--provider", "ollama")
    assert "pass --model or set LLMCLIENT_OLLAMA_MODEL" in assert_one_line_error(result, 2)


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_probe_with_server_down_is_one_line_exit_1(provider: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    args = ["probe", "--provider", provider, "--model", "m", "--base-url", url]
    line = assert_one_line_error(await run_cli(*args), 1)
    assert line.startswith(f"llmclient: error: {url}")
    assert "is the server running?" in line


async def test_run_with_server_down_is_one_line_exit_1(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(20)])
    output = tmp_path / "out.jsonl"
    url = f"http://127.0.0.1:{closed_port()}"
    args = ["run", str(source), "-o", str(output), "--provider", "ollama", "--model", "m"]
    result = await run_cli(*args, "--base-url", url, "--retries", "0")
    line = assert_one_line_error(result, 1)
    assert line.startswith(f"llmclient: error: {url}") and "OLLAMA_HOST" in line
    assert output.read_bytes() == b""  # nothing recorded: a rerun sends everything again
