"""Shared fixtures: the simulated servers, a clean environment and a fast retry policy."""

from __future__ import annotations

import os

import pytest

from llmclient import RetryPolicy

pytest_plugins = ["llmclient.testing.pytest_plugin"]

FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.01)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own LLMCLIENT_/OLLAMA_/OPENAI_ variables."""
    for name in list(os.environ):
        if name.startswith(("LLMCLIENT_", "OLLAMA_", "OPENAI_")):
            monkeypatch.delenv(name)
