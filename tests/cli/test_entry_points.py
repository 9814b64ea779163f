"""The installed entry points as real processes: `python -m llmclient` and the `llmclient`
console script reach `main()` and turn its return value into the exit code."""

from __future__ import annotations

import asyncio
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.cli.helpers import assert_one_line_error, run_cli_process


def console_script() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "llmclient"
    if not script.is_file():
        pytest.skip(f"the package is not installed here (no {script}): pip install -e .")
    return [str(script)]


async def test_module_and_console_script_exit_codes() -> None:
    script = console_script()
    module = [sys.executable, "-m", "llmclient"]
    usage, missing_key = await asyncio.gather(
        run_cli_process("bogus", program=module),
        run_cli_process("config", "--provider", "openai", program=script),
    )
    assert assert_one_line_error(usage, 2).startswith("llmclient: error:")
    assert "OPENAI_API_KEY" in assert_one_line_error(missing_key, 2)
