"""`llmclient config`: effective settings with their sources, secrets masked."""

from __future__ import annotations

from tests.cli.helpers import assert_one_line_error, run_cli

SECRET = "sk-test-do-not-print-4f9a"


async def test_shows_sources_and_masks_the_key() -> None:
    env = {"OPENAI_API_KEY": SECRET, "LLMCLIENT_OPENAI_RPM": "120"}
    result = await run_cli("config", "--provider", "openai", "--model", "gpt-x", env=env)
    assert result.code == 0, result
    assert SECRET not in result.out + result.err
    rows = {line.split()[0]: line for line in result.out.splitlines()}
    assert "********" in rows["api_key"] and "env OPENAI_API_KEY" in rows["api_key"]
    assert "gpt-x" in rows["model"] and "option --model" in rows["model"]
    assert "120.0" in rows["rpm"] and "env LLMCLIENT_OPENAI_RPM" in rows["rpm"]
    assert "default (openai profile)" in rows["max_concurrent"]


async def test_ollama_host_from_the_environment() -> None:
    env = {"OLLAMA_HOST": ":11999", "OLLAMA_NUM_PARALLEL": "2"}
    result = await run_cli("config", "--provider", "ollama", env=env)
    assert result.code == 0, result
    rows = {line.split()[0]: line for line in result.out.splitlines()}
    assert "http://127.0.0.1:11999" in rows["base_url"] and "env OLLAMA_HOST" in rows["base_url"]
    assert "env OLLAMA_NUM_PARALLEL" in rows["max_concurrent"]


async def test_invalid_environment_value_is_one_line_exit_2() -> None:
    env = {"LLMCLIENT_OLLAMA_MAX_CONCURRENT": "lots"}
    result = await run_cli("config", "--provider", "ollama", env=env)
    line = assert_one_line_error(result, 2)
    assert "LLMCLIENT_OLLAMA_MAX_CONCURRENT='lots'" in line


async def test_missing_cloud_key_is_one_line_exit_2() -> None:
    result = await run_cli("config", "--provider", "openai")
    line = assert_one_line_error(result, 2)
    assert "OPENAI_API_KEY" in line


async def test_ollama_default_is_one_like_the_server_default() -> None:
    # Ollama serves one request per model at a time by default (OLLAMA_NUM_PARALLEL=1 since
    # 0.10); the profile's 4 made three of four requests queue at such a server.
    result = await run_cli("config", "--provider", "ollama", env={"OLLAMA_HOST": ":11999"})
    assert result.code == 0, result
    row = {line.split()[0]: line for line in result.out.splitlines()}["max_concurrent"]
    assert row.split()[1] == "1"
    assert "default (Ollama's OLLAMA_NUM_PARALLEL default, 1)" in row


async def test_shows_the_cache_setting() -> None:
    env = {"LLMCLIENT_CACHE": "redis://user:pw-not-shown@127.0.0.1:6399/0"}
    result = await run_cli("config", "--provider", "ollama", env=env)
    assert result.code == 0, result
    rows = {line.split()[0]: line for line in result.out.splitlines()}
    assert "redis://127.0.0.1:6399/0" in rows["cache"] and "env LLMCLIENT_CACHE" in rows["cache"]
    assert "pw-not-shown" not in result.out
    assert "replay" in rows["cache_mode"] and "default" in rows["cache_mode"]


async def test_the_budget_from_the_environment_is_shown() -> None:
    env = {"OLLAMA_HOST": ":11999", "LLMCLIENT_BUDGET_TOTAL_TOKENS": "2e6"}
    result = await run_cli("config", "--provider", "ollama", env=env)
    assert result.code == 0, result
    row = {line.split()[0]: line for line in result.out.splitlines()}["budget"]
    assert "Budget(total_tokens=2000000)" in row and "env LLMCLIENT_BUDGET_TOTAL_TOKENS" in row
    result = await run_cli("config", "--provider", "ollama", env={"OLLAMA_HOST": ":11999"})
    assert {line.split()[0]: line for line in result.out.splitlines()}["budget"].split()[1:] == [
        "None",
        "unset",
    ]
    bad = {"OLLAMA_HOST": ":11999", "LLMCLIENT_BUDGET_TOTAL_TOKENS": "-5"}
    line = assert_one_line_error(await run_cli("config", "--provider", "ollama", env=bad), 2)
    assert "LLMCLIENT_BUDGET_TOTAL_TOKENS" in line and "-5" in line
