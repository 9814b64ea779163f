"""`OllamaClient`: translation between llmclient and the `ollama` SDK's native API.

Uses `/api/chat` and `/api/embed`; `max_tokens` becomes `num_predict` and the other sampling
parameters go into `options`. The SDK has no timeout and no retries of its own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Unpack

import httpx
import ollama
from ollama._client import _parse_host
from pydantic import ValidationError

from llmclient.clients import _structured, _tools
from llmclient.clients._http import answer_shape, not_json_object, transport_error
from llmclient.clients.base import BaseLLMClient, ClientKeywords, token_from_logprob
from llmclient.clients.params import ChatRequest, SamplingParams, check_combination
from llmclient.config import BaseUrl, ClientOptions, ClientSettings
from llmclient.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    LLMConnectionError,
    LLMError,
    MalformedResponseError,
    QuotaExceededError,
    RateLimitError,
    ServerBusyError,
    ServerError,
)
from llmclient.profiles import OLLAMA_PROFILE, ConcurrencyProfile
from llmclient.retry import parse_retry_after
from llmclient.types import Completion, StreamEnd, ToolCall, Usage, split_reasoning

__all__ = ["OllamaClient"]

_OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_tokens": "num_predict",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repetition_penalty": "repeat_penalty",
}


def _fold_host(host: BaseUrl | None, options: ClientOptions) -> None:
    """Fold `host` into `options["base_url"]` (Ollama calls it host; both are accepted)."""
    base_url = options.get("base_url")
    if host is not None and base_url is not None and host != base_url:
        raise ConfigurationError(
            f"invalid argument: host={host!r} and base_url={base_url!r} differ; pass one"
        )
    if isinstance(host, str) and not host.strip():
        raise ConfigurationError(
            f"invalid argument: host={host!r}: must be a URL or host, like http://127.0.0.1:11434"
        )
    if host is not None:
        options["base_url"] = host


class OllamaClient(BaseLLMClient):
    """A client for Ollama's native API.

    `host` (or `base_url`, or `OLLAMA_HOST`) is parsed as Ollama does: `:11435` means
    127.0.0.1:11435. Several hosts (a list, commas, or an `EndpointPool`) make a pool.
    `max_concurrent` defaults to `OLLAMA_NUM_PARALLEL` when set, else 1 (Ollama's own default).
    """

    provider: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://127.0.0.1:11434"
    native_env: ClassVar[dict[str, str]] = {
        "base_url": "OLLAMA_HOST",
        "max_concurrent": "OLLAMA_NUM_PARALLEL",
        "api_key": "OLLAMA_API_KEY",
    }

    def __init__(
        self,
        model: str | None = None,
        *,
        host: BaseUrl | None = None,
        keep_alive: float | str | None = None,
        **options: Unpack[ClientKeywords],
    ) -> None:
        _fold_host(host, options)
        super().__init__(model, **options)
        self.keep_alive = keep_alive

    @property
    def _sdk(self) -> ollama.AsyncClient:
        sdk: ollama.AsyncClient = self._sdks.get()
        return sdk

    def _make_sdk(self, base_url: str | None = None) -> ollama.AsyncClient:
        key = self.settings.api_key
        check = functools.partial(self._check_response, base_url=base_url)
        return ollama.AsyncClient(
            host=base_url or self.settings.base_url,
            timeout=self.profile.timeout,
            headers={"authorization": f"Bearer {key.get_secret_value()}"} if key else None,
            event_hooks={"response": [check]},
        )

    async def _check_response(self, response: httpx.Response, base_url: str | None = None) -> None:
        """Read what the SDK drops or cannot parse before it sees the answer.

        The SDK keeps no headers on its errors (so no Retry-After), and turns a proxy's HTML
        page or a JSON array into decoding or type errors; streams are checked line by line.
        """
        self._learn_rates(response.headers, base_url)
        content_type = response.headers.get("content-type", "")
        if response.status_code >= 400:
            await response.aread()
            raise self._status_error(
                response.status_code,
                _error_text(response),
                parse_retry_after(response.headers),
            )
        if content_type.startswith("application/x-ndjson"):
            return
        await response.aread()
        problem = not_json_object(content_type, response.content)
        if problem is not None:
            raise MalformedResponseError(problem, provider=self.provider)

    @classmethod
    def settings_for(
        cls,
        model: str | None = None,
        *,
        host: BaseUrl | None = None,
        profile: ConcurrencyProfile | None = None,
        **options: Unpack[ClientOptions],
    ) -> ClientSettings:
        """As `BaseLLMClient.settings_for`; `host` is another name for `base_url`."""
        _fold_host(host, options)
        return super().settings_for(model, profile=profile, **options)

    @classmethod
    def default_profile(cls, base_url: str) -> ConcurrencyProfile:
        """Ollama's profile, wherever the server runs."""
        return OLLAMA_PROFILE

    @staticmethod
    def _normalize_base_url(url: str) -> str:
        """Ollama's own host parsing (`:11435`, `host:port`, `http://host`)."""
        return _parse_host(url)

    def _supports(self, params: SamplingParams) -> None:
        """Refuse a tool_choice Ollama's API cannot honour."""
        check_combination(params)
        _tools.check_ollama_tool_choice(params, self.provider)

    def _check_request(self, request: ChatRequest) -> None:
        """Refuse image URLs: Ollama takes images as base64 only."""
        _tools.check_ollama_messages(request.messages)

    def _options(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        options: dict[str, Any] = {
            option: getattr(p, name)
            for name, option in _OPTION_NAMES.items()
            if getattr(p, name) is not None
        }
        options.update(p.provider_options)
        return options

    def _chat_arguments(self, request: ChatRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": _tools.ollama_messages(request.messages),
            "options": self._options(request),
            "keep_alive": self.keep_alive,
        }
        p = request.params
        if p.json_mode:
            arguments["format"] = "json"  # a top-level field, not an option
        elif p.response_format is not None:
            arguments["format"] = _structured.ollama_format(p.response_format)
        tools = _tools.ollama_tools(p)
        if tools is not None:
            arguments["tools"] = tools
        if request.params.logprobs:
            arguments["logprobs"] = True
            top = request.params.top_logprobs
            arguments["top_logprobs"] = top if top is not None else 5
        return arguments

    def _wire_body(self, request: ChatRequest) -> dict[str, Any]:
        return self._chat_arguments(request)

    async def _chat(self, request: ChatRequest, base_url: str | None = None) -> Completion:
        sdk: ollama.AsyncClient = self._sdk_at(base_url)
        response = await sdk.chat(**self._chat_arguments(request), stream=False)
        with answer_shape("chat answer", self.provider):
            completion = self._completion(response)
        return _structured.with_parsed(completion, request.params, self.provider)

    def _completion(self, response: ollama.ChatResponse) -> Completion:
        answer, reasoning = split_reasoning(response.message.content or "")
        tokens = None
        if response.logprobs:
            tokens = [
                token_from_logprob(
                    item.token,
                    item.logprob,
                    [token_from_logprob(t.token, t.logprob) for t in item.top_logprobs or []],
                )
                for item in response.logprobs
            ]
        return Completion(
            text=answer,
            reasoning=response.message.thinking or reasoning,
            finish_reason=response.done_reason,
            usage=Usage(response.prompt_eval_count or 0, response.eval_count or 0),
            tokens=tokens,
            model=response.model,
            tool_calls=_tools.ollama_tool_calls(response.message.tool_calls),
        )

    async def _stream(
        self, request: ChatRequest, base_url: str | None = None
    ) -> AsyncIterator[str | StreamEnd]:
        sdk: ollama.AsyncClient = self._sdk_at(base_url)
        parts = await sdk.chat(**self._chat_arguments(request), stream=True)
        calls: tuple[ToolCall, ...] = ()
        try:
            async for part in parts:
                if part.message.content:
                    yield part.message.content
                if part.message.tool_calls:  # Ollama sends whole calls
                    calls += _tools.ollama_tool_calls(part.message.tool_calls)
                if part.done:
                    usage = Usage(part.prompt_eval_count or 0, part.eval_count or 0)
                    yield StreamEnd(part.done_reason, usage, calls)
                    return
        finally:
            await parts.aclose()  # type: ignore[attr-defined]

    async def _embed(
        self, model: str, texts: list[str], base_url: str | None = None
    ) -> tuple[list[list[float]], int | None]:
        sdk: ollama.AsyncClient = self._sdk_at(base_url)
        response = await sdk.embed(model=model, input=texts, keep_alive=self.keep_alive)
        return [list(vector) for vector in response.embeddings], response.prompt_eval_count

    async def _ping(self, base_url: str | None = None) -> None:
        """`GET /api/tags`: answers whenever the server is up."""
        sdk: ollama.AsyncClient = self._sdk_at(base_url)
        await sdk.list()

    async def _close_sdk(self, sdk: ollama.AsyncClient) -> None:
        await sdk._client.aclose()

    def _classify(self, error: Exception) -> LLMError | None:
        if isinstance(error, ollama.ResponseError):  # an error line inside a stream
            return self._status_error(error.status_code, str(error.error))
        if isinstance(error, ConnectionError):  # the SDK's own "could not connect"
            return LLMConnectionError(
                f"could not reach Ollama ({error})", provider=self.provider, refused=True
            )
        if isinstance(error, json.JSONDecodeError | ValidationError):
            return MalformedResponseError(
                f"could not parse the answer: {error}", provider=self.provider
            )
        return transport_error(error, httpx, self.provider)

    def _status_error(
        self, status: int, message: str, retry_after: float | None = None
    ) -> LLMError:
        common: dict[str, Any] = {
            "provider": self.provider,
            "status_code": status if status > 0 else None,
        }
        if status == 503 or "server busy" in message:
            return ServerBusyError(message, retry_after=retry_after, **common)
        if status == 429 and "quota" in message.lower():
            return QuotaExceededError(message, **common)
        if status == 429:
            return RateLimitError(message, retry_after=retry_after, **common)
        if status in (401, 403):
            return AuthenticationError(message, **common)
        if status in (408, 409) or status >= 500 or status < 0:
            return ServerError(message, retry_after=retry_after, **common)  # < 0: mid-stream
        if status == 404:
            message += f" (is the model pulled? try `ollama pull {self.model}`)"
        return InvalidRequestError(message, **common)


def _error_text(response: httpx.Response) -> str:
    """The message of an error answer: Ollama's `{"error": ...}`, else the body's text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    return str(error) if error else response.text.strip()
