"""Command-line tests never sleep through retry backoff."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmclient.retry import is_testing, set_testing


@pytest.fixture(autouse=True)
def retries_without_waiting() -> Iterator[None]:
    """`llmclient.retry.set_testing`: retries are made at once, for every command this test
    runs in-process. Attempts are not capped, so `--retries N` still means N + 1 attempts.
    Subprocesses are not affected: the tests that need one use healthy servers."""
    if is_testing():  # already on for the whole session: leave it as it was set
        yield
        return
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)
