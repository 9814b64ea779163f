"""Per-provider default policy: how many requests on the wire, how fast, how to retry, how to batch.

Every default below is chosen for the kind of server behind the endpoint, and says why.

* **Ollama** (`OLLAMA_PROFILE`): `max_concurrent` 1, or `OLLAMA_NUM_PARALLEL` when that is set
  (the server runs that many requests per model; since Ollama 0.10 its default is 1, older
  servers chose up to 4 from VRAM: set `OLLAMA_NUM_PARALLEL` for those). Anything beyond
  waits in the server's queue, which looks serial, or is refused with 503 when the queue is
  full. Timeout 600 s: local models
  can be slow, and Ollama's own SDK has no timeout at all. Embeddings coalesce up to 32
  inputs per request within 10 ms: embedding models run one slot.
* **OpenAI cloud** (`OPENAI_PROFILE`): `max_concurrent` 50, timeout 120 s. The cloud scales
  out; its real limits are rpm/tpm per account, which differ by tier, so they are unset
  unless given (429s carry Retry-After, which pauses the endpoint). Embeddings coalesce up
  to 256 inputs within 20 ms (the API takes up to 2,048).
* **Local OpenAI-compatible** (`LOCAL_PROFILE`): an OpenAI-style base URL on a loopback,
  private, link-local or single-label host is a vLLM, llama.cpp, LM Studio or Ollama box,
  not a cloud: 4 concurrent (llama.cpp's `-np` and Ollama's slots are small), timeout 600 s.
  Unless `discover_limits` is off, a client asks such a server once what it serves at once
  (llama.cpp's `/props`, vLLM's `/metrics`) and uses that instead.

Retries (all profiles): faults get up to 5 attempts while the endpoint's retry budget lasts;
back-pressure (429, 503, saturated timeouts) is retried for up to 300 s. Exponential backoff
from 0.5 s to 30 s with up to 1 s of jitter, unless the server says when to come back
(Retry-After, honoured up to 60 s).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, PositiveFloat, PositiveInt

from llmclient.limits.algorithms import FixedLimit, LatencyLimit, Limit

__all__ = [
    "LOCAL_PROFILE",
    "OLLAMA_PROFILE",
    "OPENAI_PROFILE",
    "ConcurrencyProfile",
    "MaxConcurrent",
    "MaxConcurrentSpec",
    "RetryPolicy",
    "is_local_endpoint",
]


_EXPECTED = "must be a positive integer, 'auto', a Limit or a function returning one"

LimitFactory: TypeAlias = Callable[[], Limit]


def _parse_max_concurrent(value: object) -> object:
    """Accept a positive int, its string form, "auto", a `Limit` or a factory of them."""
    if isinstance(value, bool):
        raise ValueError(_EXPECTED)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit():
            raise ValueError(_EXPECTED)
        value = int(text)
    if isinstance(value, Limit) or (callable(value) and not isinstance(value, int)):
        return value
    if not isinstance(value, int) or value < 1:
        raise ValueError(_EXPECTED)
    return value


MaxConcurrentSpec: TypeAlias = int | Literal["auto"] | Limit | LimitFactory
MaxConcurrent: TypeAlias = Annotated[MaxConcurrentSpec, PlainValidator(_parse_max_concurrent)]


class RetryPolicy(BaseModel):
    """When and how long to retry a request that failed with a retryable error.

    Faults (500, a dropped connection, a malformed answer) get `max_attempts` attempts, while
    the endpoint's retry budget lasts. Back-pressure (429, 503 busy, a timeout while every slot
    was taken) is retried until `max_elapsed` from the call, however many attempts that takes.
    `max_attempts=1` turns retries off. A server-directed wait (Retry-After) longer than
    `max_server_wait`, or than what is left of `max_elapsed`, fails the call at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: PositiveInt = 5
    max_elapsed: PositiveFloat = 300.0
    max_server_wait: PositiveFloat = 60.0
    initial_wait: float = Field(0.5, ge=0)
    max_wait: float = Field(30.0, ge=0)
    jitter: float = Field(1.0, ge=0)
    budget_tokens: PositiveFloat = 20.0
    budget_refund: float = Field(0.2, ge=0)  # Finagle's default: retries up to 20% of load


class ConcurrencyProfile(BaseModel):
    """The policy a client applies to every request it sends to one endpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    max_concurrent: MaxConcurrent = 4
    rpm: PositiveFloat | None = None
    tpm: PositiveInt | None = None
    timeout: PositiveFloat = 600.0
    share_limits: bool = True
    discover_limits: bool = True  # ask a local server what it can take when no limit is given
    retry: RetryPolicy = RetryPolicy()
    adaptive_max: PositiveInt = 64  # upper bound of the "auto" limit
    embed_batch_size: PositiveInt = 32
    embed_batch_wait: float = Field(0.01, ge=0)

    def new_limit(self) -> Limit:
        """The limit algorithm `max_concurrent` asks for, fresh for one endpoint."""
        spec = self.max_concurrent
        if isinstance(spec, int):
            return FixedLimit(spec)
        if spec == "auto":
            return LatencyLimit(initial=1, max_limit=self.adaptive_max)
        if isinstance(spec, Limit):
            return spec
        made = spec()
        if not isinstance(made, Limit):
            raise TypeError(f"max_concurrent={spec!r} returned {made!r}, which is not a Limit")
        return made

    @property
    def max_workers(self) -> int:
        """The most requests this profile can ever put on the wire at once."""
        spec = self.max_concurrent
        if isinstance(spec, int):
            return spec
        if isinstance(spec, Limit):
            return spec.max_limit
        return self.adaptive_max if spec == "auto" else self.new_limit().max_limit


OLLAMA_PROFILE = ConcurrencyProfile(name="ollama", max_concurrent=1, timeout=600.0)
OPENAI_PROFILE = ConcurrencyProfile(
    name="openai",
    max_concurrent=50,
    timeout=120.0,
    embed_batch_size=256,
    embed_batch_wait=0.02,
)
LOCAL_PROFILE = ConcurrencyProfile(name="local", max_concurrent=4, timeout=600.0)


def is_local_endpoint(url: str) -> bool:
    """True when the URL's host is loopback, private, link-local or a single-label name.

    >>> is_local_endpoint("http://127.0.0.1:8080/v1")
    True
    >>> is_local_endpoint("http://vllm:8000/v1")
    True
    >>> is_local_endpoint("https://api.openai.com/v1")
    False
    """
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host
    return address.is_loopback or address.is_private or address.is_link_local
