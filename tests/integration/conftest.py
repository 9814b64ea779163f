"""Integration tier: fixtures that run a real llama.cpp ``llama-server`` on 127.0.0.1.

Every test under ``tests/integration`` is marked ``integration`` (deselected by default; run with
``pytest -m integration``).  The server binary and the tiny random-weight model are built and
generated on first use by ``scripts/real_server.py`` (~4 min on 2 cores, once; then cached);
the servers are shared by the whole session.  ``slots_processing`` / ``queue_waiting`` read
the server's own view of its load, to check how many requests a client really has in flight.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent
REPO_ROOT = INTEGRATION_DIR.parents[1]

#: Slots of the chat server; the concurrency tests rely on this number.
LLAMA_PARALLEL = 2


def _load_real_server() -> ModuleType:
    """Import ``scripts/real_server.py`` by path (``scripts/`` is not a package)."""
    name = "llmclient_scripts_real_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / "real_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


real_server = _load_real_server()


@pytest.hookimpl(tryfirst=True)  # before the `-m` deselection of the mark plugin
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


# ---------------------------------------------------------------------------------------------
# servers


@pytest.fixture(scope="session", autouse=True)
def _loopback_bypasses_proxies() -> Iterator[None]:
    """A developer's HTTP(S)_PROXY must not capture the SDKs' requests to 127.0.0.1."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(name, "")
            mp.setenv(name, ",".join(filter(None, [current, "127.0.0.1", "localhost"])))
        yield


@pytest.fixture(scope="session")
def llama_cache_dir(pytestconfig: pytest.Config) -> Path:
    """The cache holding the built server and the model, filled on demand (build progress shown).

    Resolved once here because the autouse ``clean_environment`` fixture of ``tests/conftest.py``
    hides ``LLMCLIENT_CACHE_DIR`` from each test.
    """
    cache: Path = real_server.default_cache_dir()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        real_server.ensure_all(cache)
    return cache


@pytest.fixture(scope="session")
def llama_server(llama_cache_dir: Path) -> Iterator[Any]:
    """Chat server with ``LLAMA_PARALLEL`` (2) slots; a ``real_server.RunningServer``.

    Use ``.base_url`` (``http://127.0.0.1:PORT/v1``) for SDKs, ``.url`` for ``/slots`` and
    ``/metrics``, ``.model`` for the model name.
    """
    with real_server.start_server(parallel=LLAMA_PARALLEL, cache_dir=llama_cache_dir) as server:
        yield server


@pytest.fixture(scope="session")
def llama_embed_server(llama_cache_dir: Path) -> Iterator[Any]:
    """Embeddings-only server (mean pooling, vectors of width ``real_server.N_EMBD``)."""
    with real_server.start_server(
        parallel=LLAMA_PARALLEL, embeddings=True, cache_dir=llama_cache_dir
    ) as server:
        yield server


# ---------------------------------------------------------------------------------------------
# load probes


def _root(url: str) -> str:
    """Accept the server root or the ``/v1`` base URL."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


async def server_metrics(url: str) -> dict[str, float]:
    """The ``llamacpp:*`` samples of ``GET /metrics`` (needs ``--metrics``), prefix stripped."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        resp = await http.get(_root(url) + "/metrics")
    resp.raise_for_status()
    samples: dict[str, float] = {}
    for line in resp.text.splitlines():
        if line.startswith("llamacpp:"):
            name, _, value = line.partition(" ")
            samples[name.removeprefix("llamacpp:")] = float(value)
    return samples


async def slots_processing(url: str) -> int:
    """How many slots are busy with a request right now (``llamacpp:requests_processing``)."""
    return int((await server_metrics(url))["requests_processing"])


async def queue_waiting(url: str) -> int:
    """How many requests wait for a free slot (``llamacpp:requests_deferred``)."""
    return int((await server_metrics(url))["requests_deferred"])


async def server_slots(url: str) -> list[dict[str, Any]]:
    """``GET /slots``: one JSON object per slot (``id``, ``n_ctx``, ``is_processing``, ...)."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        resp = await http.get(_root(url) + "/slots")
    resp.raise_for_status()
    slots: list[dict[str, Any]] = resp.json()
    return slots
