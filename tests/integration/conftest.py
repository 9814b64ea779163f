"""Integration tier: fixtures that run a real llama.cpp ``llama-server`` on 127.0.0.1.

Every test under ``tests/integration`` is marked ``integration`` (deselected by default; run with
``pytest -m integration -n 0``).  The server binary and the tiny random-weight model are built and
generated on first use by ``tests/integration/real_server.py`` (also a command:
``python scripts/real_server.py all``; ~4 min on 2 cores, once; then cached); the servers are
shared by the whole session.  Load probes and ``LLAMA_PARALLEL`` are in ``helpers.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import real_server
from tests.integration.helpers import LLAMA_PARALLEL

INTEGRATION_DIR = Path(__file__).resolve().parent


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


@pytest.fixture(scope="session")
def llama_jinja_server(llama_cache_dir: Path) -> Iterator[Any]:
    """Chat server started with ``--jinja`` (which llama.cpp needs to take ``tools``) and
    ``tools_template.jinja``: a Hermes-style template (tools in a system turn, calls in
    ``<tool_call>``, results in ``<tool_response>``) with no generation prompt. This llama.cpp
    starts its grammars with the template's generation prompt and then fails to initialise
    them on the test model ("Failed to initialize samplers"), as its default chatml template
    does for every ``response_format``."""
    template = INTEGRATION_DIR / "tools_template.jinja"
    extra = ["--jinja", "--chat-template-file", str(template)]
    with real_server.start_server(
        parallel=1, cache_dir=llama_cache_dir, extra_args=extra
    ) as server:
        yield server
