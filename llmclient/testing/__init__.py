"""Test support: a protocol-faithful simulated Ollama/OpenAI server and its pytest fixtures.

Enable the fixtures with `pytest_plugins = ["llmclient.testing.pytest_plugin"]` in a conftest.
"""

from ._batches import BatchService
from .server import Fault, ServerStats, SimulatedServer

__all__ = ["BatchService", "Fault", "ServerStats", "SimulatedServer"]
