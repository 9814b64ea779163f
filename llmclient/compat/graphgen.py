"""GraphGen's API clients on llmclient: import these where GraphGen imports its own.

GraphGen's `init_llm` builds `HTTPClient(**config)`, `OpenAIClient(**config, backend=backend)`
and `OllamaClient(**config)` from its `SYNTHESIZER_*`/`TRAINEE_*` variables. These classes take
the same keywords with the same defaults (`BaseLLMWrapper`'s temperature 0.0, top_p 0.95 and
max_tokens 4096 are sent on every call, as GraphGen's clients send them), answer as GraphGen's
do (`filter_think_tags`, `token_usage`), and are llmclient clients otherwise: the server's
concurrency limit, rate limits, retries and timeouts are the client's. Keywords GraphGen does
not know are llmclient's own (`max_concurrent=`, `timeout=`, ...). The plain clients
(`llmclient.OpenAIClient`, ...) keep none of GraphGen's defaults.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import ollama
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ConfigDict, ValidationError

from llmclient.clients import azure as _azure
from llmclient.clients import ollama as _ollama
from llmclient.clients import openai as _openai
from llmclient.clients.base import BaseLLMClient, History
from llmclient.clients.params import conversation
from llmclient.errors import ConfigurationError
from llmclient.fanout import run_concurrent_sync
from llmclient.types import Completion
from llmclient.types import Token as _Token

__all__ = [
    "RPM",
    "TPM",
    "AzureOpenAIClient",
    "HTTPClient",
    "OllamaClient",
    "OpenAIClient",
    "Token",
    "filter_think_tags",
    "run_concurrent",
]

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger("llmclient")


def filter_think_tags(text: str, think_tag: str = "think") -> str:
    """GraphGen's rule for an answer: every `<think>...</think>` block goes, then the text up
    to a `</think>` left without its opening tag; the rest, stripped, is the answer, or the
    whole text stripped when nothing is left.

    >>> filter_think_tags("Answer first <think>hidden</think> visible")
    'Answer first  visible'
    >>> filter_think_tags("<think>only thoughts</think>")
    '<think>only thoughts</think>'
    """
    opening, closing = f"<{think_tag}>", f"</{think_tag}>"
    kept = re.sub(f"{re.escape(opening)}.*?{re.escape(closing)}", "", text, flags=re.DOTALL)
    _, orphan, after = kept.partition(closing)
    kept = after if orphan else kept
    return kept.strip() or text.strip()


@dataclass(slots=True)
class Token(_Token):
    """GraphGen's `Token(text, prob, top_candidates, ppl)`: `ppl` is stored, None unless
    given (llmclient's own `Token.ppl` is computed from `prob`)."""

    ppl: float | None = None  # type: ignore[assignment]


class RPM:
    """GraphGen's requests-per-minute limiter, as a setting: the client enforces it."""

    __slots__ = ("rpm",)

    def __init__(self, rpm: int = 1000) -> None:
        self.rpm = rpm


class TPM:
    """GraphGen's tokens-per-minute limiter, as a setting: the client enforces it."""

    __slots__ = ("tpm",)

    def __init__(self, tpm: int = 20000) -> None:
        self.tpm = tpm


def run_concurrent(
    coro_fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    desc: str = "processing",
    unit: str = "item",
) -> list[R | None]:
    """GraphGen's `run_concurrent`: synchronous, in a new event loop per call; every item is
    attempted, a failed item's place holds None (the failure is logged). Requests are bounded
    by the client's limit."""
    return run_concurrent_sync(coro_fn, items, desc=desc, unit=unit, failed_as_none=True)


class _Keywords(BaseModel):
    """What GraphGen's API clients take besides model, server and key, with their defaults
    (`BaseLLMWrapper` and the clients' own). Values from the environment are strings."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    system_prompt: str = ""
    temperature: float = 0.0
    max_tokens: int = 4096
    repetition_penalty: float = 1.05
    top_p: float = 0.95
    top_k: int = 50
    json_mode: bool = False
    seed: int | None = None
    topk_per_token: int = 5
    request_limit: bool = False
    rpm: Any = None
    tpm: Any = None


def _keywords(values: dict[str, Any]) -> _Keywords:
    try:
        return _Keywords(**values)
    except ValidationError as error:
        problems = [f"{item['loc'][0]}={item['input']!r}: {item['msg']}" for item in error.errors()]
        raise ConfigurationError("invalid argument: " + "; ".join(problems)) from None


def _rate(name: str, value: Any, default: int) -> float:
    """A GraphGen limiter (`RPM(...)`, `TPM(...)`, GraphGen's own too) or a number, as one."""
    number = default if value is None else getattr(value, name, value)
    if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
        raise ConfigurationError(
            f"invalid argument: {name}={value!r}: must be a positive number or "
            f"{name.upper()}({name}=...)"
        )
    return number


def _rate_limits(given: _Keywords) -> dict[str, Any]:
    """llmclient's `rpm`/`tpm` for GraphGen's: they apply only with `request_limit=True`
    (then RPM() is 1000 and TPM() 20000 when not given), as in GraphGen."""
    if given.request_limit:
        return {"rpm": _rate("rpm", given.rpm, 1000), "tpm": int(_rate("tpm", given.tpm, 20000))}
    if given.rpm is not None or given.tpm is not None:
        logger.warning("rpm= and tpm= apply only with request_limit=True (as in GraphGen)")
    return {}


_STORED = (
    "temperature",
    "max_tokens",
    "repetition_penalty",
    "top_p",
    "top_k",
    "json_mode",
    "seed",
    "request_limit",
)
_CLASS_FOR = {  # GraphGen's API backends, and the class its init_llm builds for each
    "openai_api": "OpenAIClient",
    "azure_openai_api": "OpenAIClient(backend='azure_openai_api') or AzureOpenAIClient",
    "ollama_api": "OllamaClient",
    "http_api": "HTTPClient",
}


class _GraphGenClient(BaseLLMClient):
    """What GraphGen's API clients share: `BaseLLMWrapper`'s keywords and defaults, the
    limiter switch, `token_usage` (one dict per answer) and `filter_think_tags`."""

    backends: ClassVar[tuple[str, ...]]
    zero_seed_sent: ClassVar[bool] = False  # GraphGen's Ollama client sends seed=0, not OpenAI's
    filter_think_tags = staticmethod(filter_think_tags)

    def __init__(self, model: str, *, backend: str, **keywords: Any) -> None:
        self._check(backend, keywords)
        self.backend = backend
        given = _keywords(
            {k: keywords.pop(k) for k in list(keywords) if k in _Keywords.model_fields}
        )
        for name in _STORED:  # GraphGen's attributes; top_k and repetition_penalty unsent
            setattr(self, name, getattr(given, name))
        self.token_usage: list[dict[str, int]] = []
        sampling: dict[str, Any] = {
            "temperature": given.temperature,
            "top_p": given.top_p,
            "max_tokens": given.max_tokens,
            "json_mode": given.json_mode,
        }
        if given.seed or (self.zero_seed_sent and given.seed == 0):
            sampling["seed"] = given.seed
        super().__init__(
            model,
            system_prompt=given.system_prompt or None,
            topk_per_token=given.topk_per_token,
            **sampling,
            **_rate_limits(given),
            **keywords,
        )

    def _check(self, backend: str, keywords: dict[str, Any]) -> None:
        """Refuse a backend this class does not serve, and keep_reasoning (GraphGen has none)."""
        if backend not in self.backends:
            known = _CLASS_FOR.get(backend, f"one of {sorted(_CLASS_FOR)}")
            raise ConfigurationError(
                f"invalid argument: backend={backend!r}: {type(self).__name__} serves "
                f"{' or '.join(map(repr, self.backends))}; use {known}"
            )
        if "keep_reasoning" in keywords:
            raise ConfigurationError(
                "invalid argument: keep_reasoning: answers follow GraphGen's filter_think_tags; "
                "llmclient's plain clients take keep_reasoning=True"
            )

    async def generate_answer(self, text: str, history: History = None, **extra: Any) -> str:
        """GraphGen's answer: `filter_think_tags` of the text; its usage joins `token_usage`."""
        completion = await self.generate(conversation(text, history), **extra)
        if completion.usage is not None:
            self.token_usage.append(
                {
                    "prompt_tokens": completion.usage.prompt_tokens,
                    "completion_tokens": completion.usage.completion_tokens,
                    "total_tokens": completion.usage.total_tokens,
                }
            )
        return completion.text


class OpenAIClient(_GraphGenClient, _openai.OpenAIClient):
    """GraphGen's `OpenAIClient`; `backend="azure_openai_api"` makes an `AzureOpenAIClient`."""

    backends: ClassVar[tuple[str, ...]] = ("openai_api",)

    def __new__(cls, *args: Any, backend: str = "openai_api", **kwargs: Any) -> OpenAIClient:
        if cls is OpenAIClient and backend == "azure_openai_api":
            return object.__new__(AzureOpenAIClient)
        return object.__new__(cls)

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        backend: str = "openai_api",
        **keywords: Any,
    ) -> None:
        self.api_version = api_version
        if backend == "azure_openai_api":
            keywords["api_version"] = api_version
        super().__init__(model, backend=backend, api_key=api_key, base_url=base_url, **keywords)

    def _completion(self, response: ChatCompletion) -> Completion:
        completion = super()._completion(response)
        return replace(
            completion, text=filter_think_tags(response.choices[0].message.content or "")
        )


class AzureOpenAIClient(OpenAIClient, _azure.AzureOpenAIClient):
    """GraphGen's `OpenAIClient(backend="azure_openai_api")`: `model` is the deployment,
    `base_url` the resource's endpoint, `api_version` required."""

    backends: ClassVar[tuple[str, ...]] = ("azure_openai_api",)

    def __init__(self, *, backend: str = "azure_openai_api", **keywords: Any) -> None:
        super().__init__(backend=backend, **keywords)


class HTTPClient(OpenAIClient):
    """GraphGen's `HTTPClient` (`backend="http_api"`): an OpenAI-compatible server's
    `<base_url>/chat/completions`."""

    backends: ClassVar[tuple[str, ...]] = ("http_api",)

    def __init__(
        self, *, model: str, base_url: str, backend: str = "http_api", **keywords: Any
    ) -> None:
        super().__init__(model=model, base_url=base_url, backend=backend, **keywords)


class OllamaClient(_GraphGenClient, _ollama.OllamaClient):
    """GraphGen's `OllamaClient` (`backend="ollama_api"`), on Ollama's native API."""

    backends: ClassVar[tuple[str, ...]] = ("ollama_api",)
    zero_seed_sent: ClassVar[bool] = True

    def __init__(
        self,
        *,
        model: str = "gemma3",
        base_url: str = "http://localhost:11434",
        backend: str = "ollama_api",
        **keywords: Any,
    ) -> None:
        super().__init__(model, backend=backend, base_url=base_url, **keywords)

    def _completion(self, response: ollama.ChatResponse) -> Completion:
        completion = super()._completion(response)
        return replace(completion, text=filter_think_tags(response.message.content or ""))
