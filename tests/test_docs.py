"""The docs hold: every code block marked runnable runs against the simulated server, and the
generated reference pages match what scripts/gen_reference.py makes from the code.

A block is runnable when the line before its fence is `<!-- runnable -->`. It runs in a fresh
process (python blocks with `python -c`, bash blocks with `bash -eu`) in a temporary directory,
with `OLLAMA_HOST`, `OPENAI_BASE_URL` and `OPENAI_API_KEY` pointing at a simulated server, so
the code in the docs is exactly what a reader would run against a real one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmclient.testing.pytest_plugin import ServerFactory

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- runnable -->"


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the first line of code
    language: str
    code: str


def runnable_blocks() -> Iterator[Block]:
    """Every fenced block preceded by the marker, in every page under docs/."""
    for path in sorted((ROOT / "docs").rglob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() != MARKER:
                continue
            where = f"{path.relative_to(ROOT)}:{i + 1}"
            fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if not fence.startswith("```"):
                raise AssertionError(f"{where}: {MARKER} must come right before a ``` fence")
            language = fence[3:].split()[0] if fence[3:].strip() else ""
            end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise AssertionError(f"{where}: the runnable block is never closed")
            code = "\n".join(lines[i + 2 : end])
            yield Block(str(path.relative_to(ROOT)), i + 3, language, code)


BLOCKS = list(runnable_blocks())


def test_the_guides_have_runnable_blocks() -> None:
    pages = {block.path for block in BLOCKS}
    for page in ("quickstart.md", "concurrency.md", "zh/quickstart.md", "zh/concurrency.md"):
        assert f"docs/{page}" in pages
    assert {block.language for block in BLOCKS} <= {"python", "bash"}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.path}:{b.line}")
async def test_runnable_block(
    block: Block, simulated_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.005)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LLMCLIENT_", "OLLAMA_"))},
        "OLLAMA_HOST": server.url,
        "OPENAI_BASE_URL": server.openai_base_url,
        "OPENAI_API_KEY": "sk-docs-test",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    }
    if block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-eu", "-o", "pipefail", "-c", block.code]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{block.path}:{block.line} failed:\n{text}"
    assert server.stats.completed > 0, f"{block.path}:{block.line} sent no request"


def test_generated_reference_pages_are_current() -> None:
    # A fresh process: the pages list the built-in providers, not those tests registered.
    done = subprocess.run(
        [sys.executable, "scripts/gen_reference.py", "--check"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert {page for page in pages if f": {page}" not in nav} == set()
