"""What the integration tests share besides fixtures: the servers' slot count and load probes.

``slots_processing`` / ``queue_waiting`` read the server's own view of its load, to check how
many requests a client really has in flight.
"""

from __future__ import annotations

from typing import Any

import httpx

#: Slots of the shared chat server; the concurrency tests rely on this number.
LLAMA_PARALLEL = 2


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
