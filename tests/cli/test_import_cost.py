"""What a command line imports: `llmclient --help` names every command without importing one;
a command's own module (and the simulated server, the SDKs) loads only when that command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

WATCHED = ("llmclient.testing", "llmclient.cli.", "openai", "ollama", "pydantic_settings")
SCRIPT = """\
import contextlib, io, runpy, sys
sys.argv = ["llmclient", *{argv!r}]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    runpy.run_module("llmclient", run_name="__main__")
print(*(m for m in sys.modules if m.startswith({watched!r})))
"""


def package_of(module: str) -> str:
    """`openai` for `openai.types`, `llmclient.testing` for its submodules, else the module."""
    if module.startswith("llmclient.testing"):
        return "llmclient.testing"
    return module if module.startswith("llmclient.") else module.split(".")[0]


def loaded_by(*argv: str) -> set[str]:
    """The watched modules in sys.modules after `python -m llmclient <argv>`, in a fresh Python."""
    script = SCRIPT.format(argv=list(argv), watched=WATCHED)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {package_of(m) for m in done.stdout.split()} - {"llmclient.cli._common"}


def test_top_level_help_imports_no_command() -> None:
    assert loaded_by("--help") == set()


def test_a_usage_error_imports_no_command() -> None:
    assert loaded_by("bogus") == set()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("simulate", {"llmclient.cli.simulate", "llmclient.testing"}),
        ("demo", {"llmclient.cli.demo", "llmclient.testing"}),
        ("probe", {"llmclient.cli.probe"}),
        ("config", {"llmclient.cli.config"}),
        ("run", {"llmclient.cli.run", "llmclient.cli._jobfile", "llmclient.cli._resultfile"}),
    ],
)
def test_a_commands_help_imports_that_command_only(command: str, expected: set[str]) -> None:
    assert loaded_by(command, "--help") == expected
