"""What a local server says it can take: reading llama.cpp's `/props` and vLLM's `/metrics`.

Pure parsing; the clients fetch the pages (`BaseLLMClient.server_capacity`). A figure found
here replaces the profile's default `max_concurrent` (or is where `"auto"` starts), never a
limit the user gave.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "VLLM_DEFAULT_MAX_NUM_SEQS",
    "ServerCapacity",
    "capacity_from_llamacpp_props",
    "capacity_from_vllm_metrics",
    "server_root",
]

VLLM_DEFAULT_MAX_NUM_SEQS = 256
"""vLLM's default `max_num_seqs` (requests batched at once) on most GPUs."""

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


@dataclass(frozen=True)
class ServerCapacity:
    """How many requests a server serves at once, and where that figure came from."""

    slots: int
    source: str

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")


def server_root(base_url: str) -> str:
    """The server's root URL: an OpenAI-style base URL without its `/v1` path.

    >>> server_root("http://127.0.0.1:8080/v1")
    'http://127.0.0.1:8080'
    >>> server_root("http://gpu1:8000/vllm/v1/")
    'http://gpu1:8000/vllm'
    """
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def capacity_from_llamacpp_props(props: object) -> ServerCapacity | None:
    """llama.cpp's `GET /props`: `total_slots` is its `-np` (requests served at once).

    >>> capacity_from_llamacpp_props({"total_slots": 3, "model_path": "m.gguf"})
    ServerCapacity(slots=3, source='llama.cpp /props total_slots')
    >>> capacity_from_llamacpp_props({"total_slots": 0}) is None
    True
    """
    if not isinstance(props, dict):
        return None
    slots = props.get("total_slots")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        return None
    return ServerCapacity(slots, "llama.cpp /props total_slots")


def capacity_from_vllm_metrics(text: str, ceiling: int) -> ServerCapacity | None:
    """vLLM's Prometheus `GET /metrics`: `vllm:num_requests_running` and `_waiting`.

    vLLM publishes no `max_num_seqs`. While requests wait, the running count is what it takes
    at once; when nothing waits the server is not full, so the figure is vLLM's default batch
    (`VLLM_DEFAULT_MAX_NUM_SEQS`) capped at `ceiling`. None when the page is not vLLM's.

    >>> page = 'vllm:num_requests_running{model_name="m"} 8.0\\n'
    >>> capacity_from_vllm_metrics(page + 'vllm:num_requests_waiting{model_name="m"} 3.0', 64)
    ServerCapacity(slots=8, source='vLLM /metrics num_requests_running (requests waiting)')
    >>> capacity_from_vllm_metrics(page + 'vllm:num_requests_waiting{model_name="m"} 0.0', 64)
    ServerCapacity(slots=64, source="vLLM /metrics (not full: vLLM's default batch, capped)")
    """
    running = _gauge_sum(text, "vllm:num_requests_running")
    waiting = _gauge_sum(text, "vllm:num_requests_waiting")
    if running is None or waiting is None:
        return None
    if waiting > 0 and running >= 1:
        return ServerCapacity(int(running), "vLLM /metrics num_requests_running (requests waiting)")
    slots = max(1, min(VLLM_DEFAULT_MAX_NUM_SEQS, ceiling))
    return ServerCapacity(slots, "vLLM /metrics (not full: vLLM's default batch, capped)")


def _gauge_sum(text: str, name: str) -> float | None:
    """The sum of a gauge's samples over its label sets; None when it has none."""
    total: float | None = None
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match[1] != name:
            continue
        try:
            value = float(match[3])
        except ValueError:
            continue
        if math.isfinite(value):
            total = (total or 0.0) + value
    return total
