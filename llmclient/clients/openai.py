"""`OpenAIClient`: translation between llmclient and the `openai` SDK.

Works with OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, Ollama's /v1).
The SDK's own retries are off: the base class retries, so attempts never multiply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Unpack

import httpx2
import openai
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from llmclient.clients import _structured, _tools
from llmclient.clients._http import answer_shape, not_json_object, transport_error
from llmclient.clients.base import BaseLLMClient, ClientKeywords, token_from_logprob
from llmclient.clients.params import ChatRequest, SamplingParams, check_combination
from llmclient.config import ClientSettings
from llmclient.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    LLMConnectionError,
    LLMError,
    MalformedResponseError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
)
from llmclient.limits.discovery import (
    ServerCapacity,
    capacity_from_llamacpp_props,
    capacity_from_vllm_metrics,
    server_root,
)
from llmclient.limits.endpoint import CapacityQuestion
from llmclient.profiles import LOCAL_PROFILE, OPENAI_PROFILE, ConcurrencyProfile, is_local_endpoint
from llmclient.retry import parse_retry_after
from llmclient.types import Completion, StreamEnd, Token, Usage, split_reasoning

__all__ = ["OpenAIClient"]

_QUOTA_CODES = frozenset({"insufficient_quota", "credit_balance_exhausted"})
_LOCAL_PLACEHOLDER_KEY = "llmclient-local"
_LOCAL_ONLY = ("top_k", "repetition_penalty")  # sampling parameters only local servers take
logger = logging.getLogger("llmclient")  # local servers ignore the key; the SDK wants one
ASK_TIMEOUT = 5.0  # seconds asking a local server what it can take may take, in all


class OpenAIClient(BaseLLMClient):
    """A client for OpenAI's API or any OpenAI-compatible server.

    A base URL on a loopback or private host gets the local profile (4 concurrent);
    the OpenAI cloud gets 50. An API key comes from `api_key`, `LLMCLIENT_OPENAI_API_KEY`
    or `OPENAI_API_KEY`; local servers need none.
    """

    provider: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    native_env: ClassVar[dict[str, str]] = {
        "api_key": "OPENAI_API_KEY",
        "base_url": "OPENAI_BASE_URL",
    }

    def __init__(self, model: str | None = None, **options: Unpack[ClientKeywords]) -> None:
        self._warned_unsent = False
        super().__init__(model, **options)
        self._max_tokens_field = "max_tokens" if self._local else "max_completion_tokens"

    @property
    def _sdk(self) -> openai.AsyncOpenAI:
        sdk: openai.AsyncOpenAI = self._sdks.get()
        return sdk

    def _make_sdk(self, base_url: str | None = None) -> openai.AsyncOpenAI:
        key = self.settings.api_key
        return openai.AsyncOpenAI(
            api_key=key.get_secret_value() if key else _LOCAL_PLACEHOLDER_KEY,
            base_url=base_url or self.settings.base_url,
            timeout=self.profile.timeout,
            max_retries=0,
        )

    @functools.cached_property
    def _local(self) -> bool:
        """Whether the server is a local OpenAI-compatible one rather than the OpenAI cloud."""
        return is_local_endpoint(self.settings.base_url)

    def _supports(self, params: SamplingParams) -> None:
        """Say once that the OpenAI cloud is not sent `top_k` or `repetition_penalty`."""
        check_combination(params)
        unsent = [n for n in _LOCAL_ONLY if getattr(params, n) is not None]
        if unsent and not self._local and not self._warned_unsent:
            self._warned_unsent = True
            logger.warning(
                "%s: the OpenAI API takes no %s; not sent (vLLM, llama.cpp and other "
                "OpenAI-compatible servers on local hosts get them)",
                self.endpoint_name,
                " or ".join(unsent),
            )

    @classmethod
    def _check_settings(cls, settings: ClientSettings) -> None:
        """A cloud endpoint needs an API key; local servers need none."""
        if settings.api_key is None and not is_local_endpoint(settings.base_url):
            raise ConfigurationError(
                f"no API key for {settings.endpoint}: pass api_key=..., or set "
                "OPENAI_API_KEY or LLMCLIENT_OPENAI_API_KEY"
            )

    @classmethod
    def default_profile(cls, base_url: str) -> ConcurrencyProfile:
        """The local profile for loopback/private hosts, else the OpenAI cloud profile."""
        return LOCAL_PROFILE if is_local_endpoint(base_url) else OPENAI_PROFILE

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": _tools.openai_messages(request.messages),
        }
        for name in (
            "temperature",
            "top_p",
            "seed",
            "stop",
            "presence_penalty",
            "frequency_penalty",
        ):
            value = getattr(p, name)
            if value is not None:
                arguments[name] = value
        if p.max_tokens is not None:
            arguments[self._max_tokens_field] = p.max_tokens
        if p.logprobs:
            arguments["logprobs"] = True
            arguments["top_logprobs"] = p.top_logprobs if p.top_logprobs is not None else 5
        if p.json_mode:
            arguments["response_format"] = {"type": "json_object"}
        elif p.response_format is not None:
            arguments["response_format"] = _structured.openai_format(p.response_format)
        if p.tools:  # OpenAI refuses a tool_choice without tools
            arguments["tools"] = _tools.openai_tools(p)
            if p.tool_choice is not None:
                arguments["tool_choice"] = _tools.openai_tool_choice(p.tool_choice)
        extra = dict(p.provider_options)
        if self._local:  # not in OpenAI's API; vLLM and llama.cpp accept them
            extra.update({n: getattr(p, n) for n in _LOCAL_ONLY if getattr(p, n) is not None})
        if extra:
            arguments["extra_body"] = extra
        return arguments

    def _wire_body(self, request: ChatRequest) -> dict[str, Any]:
        return self._arguments(request)

    async def _chat(self, request: ChatRequest, base_url: str | None = None) -> Completion:
        sdk: openai.AsyncOpenAI = self._sdk_at(base_url)
        try:
            raw = await sdk.chat.completions.with_raw_response.create(**self._arguments(request))
        except openai.APIStatusError as error:
            self._learn_rates(error.response.headers, base_url)
            raise
        self._learn_rates(raw.http_response.headers, base_url)
        with answer_shape("chat completion", self.provider):
            self._check_answer(raw.http_response)
            completion = self._completion(raw.parse())
        return _structured.with_parsed(completion, request.params, self.provider)

    def _check_answer(self, response: httpx2.Response) -> None:
        problem = not_json_object(response.headers.get("content-type", ""), response.content)
        if problem is not None:
            raise MalformedResponseError(problem, provider=self.provider)

    def _completion(self, response: ChatCompletion) -> Completion:
        if not response.choices:
            raise MalformedResponseError("the answer has no choices", provider=self.provider)
        choice = response.choices[0]
        answer, reasoning = split_reasoning(choice.message.content or "")
        tokens: list[Token] | None = None
        if choice.logprobs is not None and choice.logprobs.content:
            tokens = [
                token_from_logprob(
                    item.token,
                    item.logprob,
                    [token_from_logprob(t.token, t.logprob) for t in item.top_logprobs],
                )
                for item in choice.logprobs.content
            ]
        usage = response.usage
        calls = choice.message.tool_calls
        return Completion(
            text=answer,
            reasoning=getattr(choice.message, "reasoning_content", None) or reasoning,
            finish_reason=choice.finish_reason,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else None,
            tokens=tokens,
            model=response.model,
            tool_calls=tuple(_tools.openai_tool_call(c, self.provider) for c in calls)
            if calls
            else (),
        )

    async def _stream(
        self, request: ChatRequest, base_url: str | None = None
    ) -> AsyncIterator[str | StreamEnd]:
        sdk: openai.AsyncOpenAI = self._sdk_at(base_url)
        try:
            chunks = await sdk.chat.completions.create(**self._arguments(request), stream=True)
        except openai.APIStatusError as error:
            self._learn_rates(error.response.headers, base_url)
            raise
        self._learn_rates(chunks.response.headers, base_url)
        finish: str | None = None
        usage: Usage | None = None
        pieces: _tools.OpenAICallPieces | None = None
        try:
            async for chunk in chunks:
                with answer_shape("chat completion chunk", self.provider):
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish = choice.finish_reason or finish
                    delta = choice.delta
                    text = delta.content if delta is not None else None
                    if delta is not None and delta.tool_calls:
                        pieces = pieces or _tools.OpenAICallPieces()
                        pieces.add(delta.tool_calls)
                if text:
                    yield text
        finally:
            await chunks.close()
        if finish is not None:  # no finish_reason: the stream was cut off
            calls = pieces.calls(self.provider) if pieces is not None else ()
            yield StreamEnd(finish, usage, calls)

    async def _embed(
        self, model: str, texts: list[str], base_url: str | None = None
    ) -> tuple[list[list[float]], int | None]:
        sdk: openai.AsyncOpenAI = self._sdk_at(base_url)
        try:
            raw = await sdk.embeddings.with_raw_response.create(model=model, input=texts)
        except openai.APIStatusError as error:
            self._learn_rates(error.response.headers, base_url)
            raise
        self._learn_rates(raw.http_response.headers, base_url)
        with answer_shape("list of embeddings", self.provider):
            self._check_answer(raw.http_response)
            response = raw.parse()
            data = sorted(response.data, key=lambda item: item.index)
            used = response.usage.total_tokens if response.usage else None
            return [list(item.embedding) for item in data], used

    async def _ping(self, base_url: str | None = None) -> None:
        """`GET /models`: answers whenever the server is up."""
        sdk: openai.AsyncOpenAI = self._sdk_at(base_url)
        await sdk.models.list()

    def _capacity_question(self, url: str) -> CapacityQuestion | None:
        """Local servers may say what they serve at once; the OpenAI cloud does not."""
        if not is_local_endpoint(url):
            return None
        return functools.partial(self._ask_capacity, server_root(url))

    async def _ask_capacity(self, root: str) -> ServerCapacity | None:
        """llama.cpp's `GET /props` (`total_slots`), else vLLM's `GET /metrics`."""
        async with asyncio.timeout(ASK_TIMEOUT):
            props = await self._page(f"{root}/props")
            if props is not None:
                with contextlib.suppress(ValueError):
                    found = capacity_from_llamacpp_props(props.json(), self.profile.adaptive_max)
                    if found is not None:
                        return found
            metrics = await self._page(f"{root}/metrics")
            if metrics is not None:
                return capacity_from_vllm_metrics(metrics.text, self.profile.adaptive_max)
        return None

    async def _page(self, url: str) -> httpx2.Response | None:
        """The answer to a GET of `url`, None when the server has no such page."""
        try:
            response: httpx2.Response = await self._sdk.get(
                url, cast_to=httpx2.Response, options={"max_retries": 0}
            )
        except openai.APIStatusError:
            return None
        return response

    async def _close_sdk(self, sdk: openai.AsyncOpenAI) -> None:
        await sdk.close()

    def _classify(self, error: Exception) -> LLMError | None:
        if isinstance(error, openai.APITimeoutError):
            return RequestTimeoutError("the request timed out", provider=self.provider)
        if isinstance(error, openai.APIConnectionError):
            # The SDK wraps every transport failure; its cause says which one it was.
            cause = error.__cause__
            found = transport_error(cause, httpx2, self.provider) if cause is not None else None
            return found or LLMConnectionError(
                f"connection failed: {error}", provider=self.provider
            )
        if isinstance(error, openai.APIStatusError):
            return self._classify_status(error)
        if isinstance(error, openai.APIError):  # an error event inside a stream
            return ServerError(
                f"the server reported an error mid-stream: {error.message}", provider=self.provider
            )
        if isinstance(error, json.JSONDecodeError | ValidationError):
            return MalformedResponseError(
                f"could not parse the answer: {error}", provider=self.provider
            )
        return transport_error(error, httpx2, self.provider)

    def _classify_status(self, error: openai.APIStatusError) -> LLMError:
        status = error.status_code
        body = error.body if isinstance(error.body, dict) else {}
        detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
        message = str(detail.get("message") or error.message)
        codes = {str(detail.get("type")), str(detail.get("code")), str(error.type), str(error.code)}
        retry_after = parse_retry_after(error.response.headers)
        common: dict[str, Any] = {"provider": self.provider, "status_code": status}
        if codes & _QUOTA_CODES:
            return QuotaExceededError(message, **common)
        if status == 429:
            return RateLimitError(message, retry_after=retry_after, **common)
        if status in (401, 403):
            return AuthenticationError(message, **common)
        if status == 503:
            return ServerBusyError(message, retry_after=retry_after, **common)
        if status in (408, 409) or status >= 500:
            return ServerError(message, retry_after=retry_after, **common)
        if status == 404:
            message += f" (check the model name {self.model!r} and the base URL)"
        return InvalidRequestError(message, **common)
