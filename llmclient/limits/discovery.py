"""What a local server says it can take: reading llama.cpp's `/props` and vLLM's `/metrics`.

Pure parsing; the clients fetch the pages (`BaseLLMClient.server_capacity`). A figure found
here replaces the profile's default `max_concurrent` (or is where `"auto"` starts), never a
limit the user gave. No figure is taken above a ceiling (the profile's `adaptive_max`): a
server that says it serves a billion at once is capped there, and the figure it gave is kept
in `ServerCapacity.reported`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
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
_MODEL_NAME = re.compile(r'model_name="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ServerCapacity:
    """How many requests a server serves at once, and where that figure came from.

    `reported` is what the server said when that was above the ceiling `slots` was capped at
    (None: `slots` is the server's own figure).
    """

    slots: int
    source: str
    reported: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")

    def capped(self, ceiling: int) -> ServerCapacity:
        """This figure, or `ceiling` (and what the server said, in `reported`) when above it.

        >>> ServerCapacity(10**9, "x").capped(64)
        ServerCapacity(slots=64, source='x, capped at 64')
        """
        if self.slots <= ceiling:
            return self
        source = f"{self.source}, capped at {ceiling}"
        return replace(self, slots=ceiling, source=source, reported=self.slots)


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


def capacity_from_llamacpp_props(props: object, ceiling: int) -> ServerCapacity | None:
    """llama.cpp's `GET /props`: `total_slots` is its `-np` (requests served at once), taken
    up to `ceiling`.

    >>> capacity_from_llamacpp_props({"total_slots": 3, "model_path": "m.gguf"}, 64)
    ServerCapacity(slots=3, source='llama.cpp /props total_slots')
    >>> capacity_from_llamacpp_props({"total_slots": 0}, 64) is None
    True
    """
    if not isinstance(props, dict):
        return None
    slots = props.get("total_slots")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        return None
    return ServerCapacity(slots, "llama.cpp /props total_slots").capped(ceiling)


def capacity_from_vllm_metrics(text: str, ceiling: int) -> ServerCapacity | None:
    """vLLM's Prometheus `GET /metrics`: `vllm:num_requests_running` and `_waiting`.

    vLLM publishes no `max_num_seqs`. While requests wait, the running count is what it takes
    at once (up to `ceiling`); when nothing waits the server is not full, so the figure is
    vLLM's default batch (`VLLM_DEFAULT_MAX_NUM_SEQS`) capped at `ceiling`. None when the
    page is not vLLM's.

    Samples are labelled by `model_name` (and, on a data-parallel server, by `engine`): the
    samples of one model are added up, since each engine runs a batch of its own, and of
    several models the largest is taken, since a page that names several (a proxy's merged
    page) is not one batch. Negative and non-finite samples are ignored.

    >>> page = 'vllm:num_requests_running{model_name="m"} 8.0\\n'
    >>> capacity_from_vllm_metrics(page + 'vllm:num_requests_waiting{model_name="m"} 3.0', 64)
    ServerCapacity(slots=8, source='vLLM /metrics num_requests_running (requests waiting)')
    >>> capacity_from_vllm_metrics(page + 'vllm:num_requests_waiting{model_name="m"} 0.0', 64)
    ServerCapacity(slots=64, source="vLLM /metrics (not full: vLLM's default batch, capped)")
    """
    running = _gauge(text, "vllm:num_requests_running")
    waiting = _gauge(text, "vllm:num_requests_waiting")
    if running is None or waiting is None:
        return None
    if waiting > 0 and running >= 1:
        found = ServerCapacity(
            int(running), "vLLM /metrics num_requests_running (requests waiting)"
        )
        return found.capped(ceiling)
    slots = max(1, min(VLLM_DEFAULT_MAX_NUM_SEQS, ceiling))
    return ServerCapacity(slots, "vLLM /metrics (not full: vLLM's default batch, capped)")


def _gauge(text: str, name: str) -> float | None:
    """A gauge's value: its samples summed per `model_name`, the largest of those sums;
    None when it has no sample."""
    by_model: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match[1] != name:
            continue
        try:
            value = float(match[3])
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            model = _MODEL_NAME.search(match[2] or "")
            key = model[1] if model is not None else ""
            by_model[key] = by_model.get(key, 0.0) + value
    return max(by_model.values(), default=None)
