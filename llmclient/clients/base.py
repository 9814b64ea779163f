"""`BaseLLMClient`: the public face every provider shares; subclasses only translate.

A client resolves its settings once, then sends every request through its `Pipeline`
(limits, timeout, retries, stats). Subclasses implement `_chat`, `_stream`, `_embed`,
`_classify`, `_make_sdk` and `_close_sdk`; defining `provider` registers them for `client_for`.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Unpack, cast

from llmclient._aclose import AsyncClosing
from llmclient._checks import check_int
from llmclient._loop_local import LoopLocal
from llmclient._pipeline import Pipeline
from llmclient.clients import _pool
from llmclient.clients.params import (
    CallOptions,
    ChatRequest,
    SamplingOptions,
    SamplingParams,
    conversation,
    messages_from,
    validate_params,
)
from llmclient.clients.registry import register_provider
from llmclient.coalesce import MicroBatcher, send_together
from llmclient.config import ClientOptions, ClientSettings, public_url, resolve_settings
from llmclient.errors import ConfigurationError, LLMError, UnsupportedFeatureError
from llmclient.limits import (
    Endpoint,
    EndpointStats,
    FixedLimit,
    Limit,
    PoolDispatcher,
    RetryBudget,
    endpoint_key,
    shared_endpoint,
)
from llmclient.limits.backends import backend_for
from llmclient.limits.discovery import ServerCapacity
from llmclient.limits.endpoint import CapacityProbe
from llmclient.limits.pool import ROUTE
from llmclient.profiles import LOCAL_PROFILE, ConcurrencyProfile, is_local_endpoint
from llmclient.telemetry import Observer
from llmclient.types import (
    Completion,
    Message,
    MessageInput,
    Stats,
    StreamEnd,
    TextStream,
    Token,
    Usage,
)

__all__ = [
    "BaseLLMClient",
    "ChatRequest",
    "ClientConstructorOptions",
    "ClientKeywords",
    "TextStream",
    "token_from_logprob",
]

History = Sequence[str] | Sequence[MessageInput] | None


class ClientConstructorOptions(ClientOptions, SamplingOptions, total=False):
    """Every keyword a client's constructor takes besides its own named ones."""


class ClientKeywords(ClientConstructorOptions, total=False):
    """Every keyword `BaseLLMClient.__init__` takes: what subclasses pass on to it."""

    system_prompt: str | None
    params: Mapping[str, Any] | None
    topk_per_token: int
    profile: ConcurrencyProfile | None
    tokenizer: Any
    keep_reasoning: bool
    observer: Observer | None


class BaseLLMClient(AsyncClosing):
    """A client that owns the concurrency, rate, retry and timeout policy for its endpoint.

    Subclasses set `provider`, `default_base_url` and `native_env`, pick a default profile,
    and implement the translation primitives.
    """

    provider: ClassVar[str]
    default_base_url: ClassVar[str]
    native_env: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "provider" in cls.__dict__:
            register_provider(cls.provider, cls)

    def __init__(
        self,
        model: str | None = None,
        *,
        system_prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        topk_per_token: int = 5,
        profile: ConcurrencyProfile | None = None,
        tokenizer: Any = None,
        keep_reasoning: bool = False,
        observer: Observer | None = None,
        **options: Unpack[ClientConstructorOptions],
    ) -> None:
        """Settings come from `options` (and the environment); sampling keywords
        (`temperature=`, `max_tokens=`, ...) and `params` become defaults for every call.

        `tokenizer` (any object with `encode`/`decode`) is kept as `client.tokenizer` for
        callers that count tokens; llmclient itself never needs one. `keep_reasoning=True`
        makes `generate_answer` return a reasoning model's `<think>` block with the answer.
        `observer` receives this client's request events (see `llmclient.telemetry`), besides
        the observers registered for every client.
        """
        check_int("topk_per_token", topk_per_token, 0)
        if observer is not None and not isinstance(observer, Observer):
            raise TypeError(f"observer={observer!r}: must be an llmclient.telemetry.Observer")
        if topk_per_token > 20:
            raise ConfigurationError(
                f"invalid argument: topk_per_token={topk_per_token!r}: must be 0..20"
            )
        sampling = {k: v for k, v in options.items() if k in SamplingParams.model_fields}
        own = cast(ClientOptions, {k: v for k, v in options.items() if k not in sampling})
        self.settings: ClientSettings = self.settings_for(model, profile=profile, **own)
        self.system_prompt = system_prompt
        self.default_params = validate_params({**(params or {}), **sampling})
        self._supports(self.default_params)
        self.topk_per_token = topk_per_token
        self.tokenizer = tokenizer
        self.keep_reasoning = keep_reasoning
        key = self.settings.api_key
        self._pipeline = Pipeline(
            self.provider,
            self.endpoint_name,
            self.profile,
            self._endpoint,
            self._classify,
            secret=key.get_secret_value() if key else None,
            observer=observer,
        )
        self._limits = backend_for(self.settings.limits, self.settings.on_backend_error)
        self._endpoints: LoopLocal[Endpoint | PoolDispatcher] = LoopLocal(self._make_endpoint)
        self._coalescers = LoopLocal(self._make_coalescer)
        self._sdks: LoopLocal[Any] | _pool.SdkPerServer = LoopLocal(self._make_sdk, self._close_sdk)
        if self.settings.pool is not None:
            self._check_pool_limits()
            self._endpoints = LoopLocal(self._make_pool)
            self._sdks = _pool.SdkPerServer(self, self.settings.pool.urls)
        self._closed = False

    @classmethod
    def settings_for(
        cls,
        model: str | None = None,
        *,
        profile: ConcurrencyProfile | None = None,
        **options: Unpack[ClientOptions],
    ) -> ClientSettings:
        """The settings a client of this class would run with, and their sources, without
        making one (nothing is connected): arguments over environment over profile."""
        if profile is not None and not isinstance(profile, ConcurrencyProfile):
            raise TypeError(f"profile={profile!r}: must be a ConcurrencyProfile")
        settings = resolve_settings(
            cls.provider,
            {"model": model, **options},
            native_env=cls.native_env,
            default_base_url=cls.default_base_url,
            default_profile=cls.default_profile,
            profile=profile,
            normalize_url=cls._normalize_base_url,
        )
        cls._check_settings(settings)
        return settings

    def _supports(self, params: SamplingParams) -> None:
        """Refuse sampling parameters this provider cannot honour (before anything is sent)."""

    @classmethod
    def _check_settings(cls, settings: ClientSettings) -> None:
        """Refuse settings this provider cannot work with (e.g. a cloud without a key)."""

    # ----------------------------------------------------------- provider primitives
    @classmethod
    def default_profile(cls, base_url: str) -> ConcurrencyProfile:
        """The profile for `base_url` when none is given (see `llmclient.profiles`)."""
        return LOCAL_PROFILE

    @staticmethod
    def _normalize_base_url(url: str) -> str:
        """The provider's canonical form of a user-given base URL (ValueError if it has none)."""
        return url.rstrip("/")

    @abstractmethod
    async def _chat(self, request: ChatRequest) -> Completion:
        """Send one chat request to the provider and translate the answer."""

    @abstractmethod
    def _stream(self, request: ChatRequest) -> AsyncIterator[str | StreamEnd]:
        """Stream one chat request's text deltas, then a `StreamEnd` at the end marker.

        A stream that stops without yielding its `StreamEnd` is treated as cut off.
        """

    @abstractmethod
    async def _embed(self, model: str, texts: list[str]) -> tuple[list[list[float]], int | None]:
        """Embed `texts` in one provider request; return the vectors and tokens used."""

    @abstractmethod
    def _classify(self, error: Exception) -> LLMError | None:
        """Translate a provider exception into an llmclient error; None if it is not one."""

    @abstractmethod
    def _make_sdk(self) -> Any:
        """A provider SDK client for the running event loop (one is made per loop)."""

    @abstractmethod
    async def _close_sdk(self, sdk: Any) -> None:
        """Close an SDK client made by `_make_sdk`, in its own loop."""

    @property
    def _sdk(self) -> Any:
        """The provider SDK client of the running event loop (and, in a pool, of the server
        the running attempt was admitted to)."""
        return self._sdks.get()

    async def _ping(self) -> None:
        """A cheap request that shows the server is up (a listing): pools probe a server they
        took out with it. Without one, such a server gets requests again after a while."""
        raise NotImplementedError

    # ----------------------------------------------------------------- public API
    @property
    def model(self) -> str | None:
        """The chat model requests use by default."""
        return self.settings.model

    @property
    def profile(self) -> ConcurrencyProfile:
        """The effective profile (defaults merged with arguments and environment)."""
        return self.settings.profile

    @property
    def max_workers(self) -> int:
        """The most requests this client can ever have on the wire: helpers size pools to it
        (for an endpoint pool, the sum over its servers)."""
        pool = self.settings.pool
        latest = self._endpoints.latest()
        if pool is None:
            return _workers(latest, self.profile)
        members = latest.members if isinstance(latest, PoolDispatcher) else None
        return sum(
            _workers(members[i].endpoint if members else None, self._server_profile(limit))
            for i, limit in enumerate(pool.limits)
        )

    @property
    def endpoint_name(self) -> str:
        """The endpoint for messages: scheme, host, port and path, never credentials."""
        return self.settings.endpoint

    @property
    def stats(self) -> Stats:
        """A snapshot of this client's requests so far (an endpoint pool's: all servers')."""
        endpoint = self._endpoints.latest()
        if endpoint is not None:
            limit = endpoint.concurrency_limit
        elif self.settings.pool is not None:
            limit = sum(_first_limit(self._server_profile(lm)) for lm in self.settings.pool.limits)
        else:
            limit = _first_limit(self.profile)
        return self._pipeline.recorder.stats(limit)

    @property
    def endpoint_stats(self) -> dict[str, EndpointStats]:
        """Each server's health and attempts by URL: one per server of an endpoint pool, or
        the one endpoint (always reported healthy: only pools take servers out)."""
        return _pool.endpoint_stats(self, self._endpoints.latest())

    async def generate(
        self, prompt_or_messages: str | Sequence[MessageInput], **params: Unpack[CallOptions]
    ) -> Completion:
        """One chat completion under the client's limits and retries."""
        request = self._request(messages_from(prompt_or_messages), params)
        completion, attempts, elapsed = await self._pipeline.call(
            "chat",
            lambda: self._chat(request),
            request.estimated_tokens(),
            _usage,
            request.model,
            request.messages,
        )
        return _stamped(completion, attempts, elapsed)

    async def generate_answer(
        self, text: str, history: History = None, **extra: Unpack[CallOptions]
    ) -> str:
        """The answer text to `text` after `history` (strings alternate user, assistant).

        A reasoning model's thinking is left out (see `Completion.reasoning`) unless the
        client was made with `keep_reasoning=True`.
        """
        completion = await self.generate(conversation(text, history), **extra)
        if self.keep_reasoning and completion.reasoning:
            return f"<think>{completion.reasoning}</think>\n{completion.text}"
        return completion.text

    async def generate_topk_per_token(
        self, text: str, history: History = None, **extra: Unpack[CallOptions]
    ) -> list[Token]:
        """The generated tokens (one by default) with their top-k alternatives.

        `top_logprobs` (default: the client's `topk_per_token`) sets k; `max_tokens`
        defaults to 1.
        """
        params: CallOptions = {
            "max_tokens": 1,
            "top_logprobs": self.topk_per_token,
            **extra,
            "logprobs": True,
        }
        completion = await self.generate(conversation(text, history), **params)
        if not completion.tokens:
            raise UnsupportedFeatureError(
                "the server returned no log-probabilities; it may not support logprobs",
                provider=self.provider,
                endpoint=self.endpoint_name,
            )
        return completion.tokens

    async def generate_inputs_prob(
        self, text: str, history: History = None, **extra: Unpack[CallOptions]
    ) -> list[Token]:
        """Log-probabilities of the prompt's own tokens, where the provider can give them."""
        raise UnsupportedFeatureError(
            f"{type(self).__name__} cannot return prompt log-probabilities: the {self.provider} "
            "chat API only scores generated tokens",
            provider=self.provider,
        )

    def stream(
        self, prompt_or_messages: str | Sequence[MessageInput], **params: Unpack[CallOptions]
    ) -> TextStream:
        """Text deltas of one completion; the request holds its slot until the stream ends."""
        request = self._request(messages_from(prompt_or_messages), params)
        estimate = request.estimated_tokens()
        return TextStream(
            lambda on_end: self._pipeline.stream(
                lambda: self._stream(request), estimate, on_end, request.model, request.messages
            )
        )

    async def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """One vector per text, in order.

        Texts from all concurrent `embed` calls within the profile's `embed_batch_wait` are
        sent together, up to `embed_batch_size` per provider request.
        """
        self._check_open()
        items = [texts] if isinstance(texts, str) else list(texts)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise TypeError(f"texts[{index}] must be a string, got {type(item).__name__}")
        if not items:
            return []
        self._model_for(self.settings.embed_model, "embed_model")
        return await self._coalescers.get().submit(items)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Refuse bad sampling parameters (`model` allowed) before any work starts."""
        validate_params({k: v for k, v in params.items() if k != "model"})

    async def aclose(self) -> None:
        """Finish pending embeddings, close the provider connection; no use afterwards.

        A client used from several event loops in turn (one `asyncio.run` after another) has
        one connection pool per loop; each closes when its loop shuts down.
        """
        if not self._closed:
            self._closed = True
            coalescer = self._coalescers.current()
            if coalescer is not None:
                await coalescer.flush()
            await self._sdks.aclose()
            target = self._endpoints.current()
            if isinstance(target, PoolDispatcher):
                await target.aclose()
                for member in target.members:
                    await member.endpoint.aclose()
            elif target is not None:
                await target.aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.endpoint_name!r}, "
            f"profile={self.profile.name!r}, max_concurrent={self.profile.max_concurrent!r})"
        )

    # ------------------------------------------------------------- internals
    def _model_for(self, model: str | None, setting: str) -> str:
        if model:
            return model
        raise ConfigurationError(
            f"no {setting} set for {type(self).__name__}: pass {setting}=... or set "
            f"LLMCLIENT_{self.provider.upper()}_{setting.upper()}"
        )

    def _request(self, messages: list[Message], params: Mapping[str, Any]) -> ChatRequest:
        self._check_open()
        if self.system_prompt and messages[0].role != "system":
            messages.insert(0, Message("system", self.system_prompt))
        call_params = {k: v for k, v in params.items() if k != "model"}
        merged = self.default_params
        if call_params:
            merged = merged.merged(validate_params(call_params))
            self._supports(merged)
        return ChatRequest(
            model=self._model_for(params.get("model") or self.model, "model"),
            messages=[m.to_dict() for m in messages],
            params=merged,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new client")

    def _endpoint(self) -> Endpoint | PoolDispatcher:
        return self._endpoints.get()

    def _learn_limits(self, headers: Mapping[str, str]) -> None:
        """Providers pass every response's headers: announced rate limits pace dispatch."""
        member = ROUTE.get()
        target = member.endpoint if member is not None else self._endpoints.current()
        if isinstance(target, Endpoint):
            target.learn(headers, self.profile.retry.max_server_wait)

    def _make_endpoint(
        self, url: str | None = None, profile: ConcurrencyProfile | None = None
    ) -> Endpoint:
        """The `Endpoint` of `url` (default: the base URL) under `profile` (default: ours)."""
        p = profile or self.profile
        url = url or self.settings.base_url
        name = public_url(url)
        budget = RetryBudget(p.retry.budget_tokens, p.retry.budget_refund)
        probe = self._limit_probe(url, p)
        if not p.share_limits:
            endpoint = Endpoint.local(name, p.new_limit(), p.rpm, p.tpm, budget)
            if probe is not None:
                endpoint.ask_server(probe)
            return endpoint
        key = self.settings.api_key
        shared_key = endpoint_key(
            url, key.get_secret_value() if key else None, is_local_endpoint(url)
        )
        return shared_endpoint(
            shared_key, name, p.new_limit(), p.rpm, p.tpm, self._limits, budget, probe
        )

    def _limit_probe(self, url: str, profile: ConcurrencyProfile) -> CapacityProbe | None:
        """The server question for `url` when its limit is a default (or `"auto"`) and
        `discover_limits` is on; None otherwise."""
        if not profile.discover_limits:
            return None
        if profile.max_concurrent != "auto":
            if profile is not self.profile:
                return None  # a pool server's own max_concurrent
            if not self.settings.sources.get("max_concurrent", "").startswith("default"):
                return None
        return self._capacity_probe(url)

    def _capacity_probe(self, url: str) -> CapacityProbe | None:
        """Providers that can ask `url` what it serves at once return how (`ServerCapacity`)."""
        return None

    async def server_capacity(self, url: str | None = None) -> ServerCapacity | None:
        """Ask the server (`url`, default the base URL) how many requests it serves at once:
        llama.cpp's `/props`, vLLM's `/metrics`. None when this provider or server cannot say."""
        self._check_open()
        probe = self._capacity_probe(url or self.settings.base_url)
        return await probe() if probe is not None else None

    async def discover_limits(self) -> int:
        """Ask the servers now what they can take, where the limit is a default (the first
        request does it anyway, once per event loop); return the new `max_workers`."""
        self._check_open()
        target = self._endpoint()
        if isinstance(target, PoolDispatcher):
            endpoints = [member.endpoint for member in target.members]
        else:
            endpoints = [target]
        await asyncio.gather(*(endpoint.discover() for endpoint in endpoints))
        return self.max_workers

    def _server_profile(self, max_concurrent: Any) -> ConcurrencyProfile:
        """The profile of one server of an endpoint pool (its own `max_concurrent`, if set)."""
        if max_concurrent is None:
            return self.profile
        return self.profile.model_copy(update={"max_concurrent": max_concurrent})

    def _make_pool(self) -> PoolDispatcher:
        pool = self.settings.pool
        assert pool is not None
        servers = [
            (url, public_url(url), self._make_endpoint(url, self._server_profile(limit)))
            for url, limit in zip(pool.urls, pool.limits, strict=True)
        ]
        retry = self.profile.retry
        return PoolDispatcher(
            pool,
            servers,
            lambda member: _pool.ping_member(self, member),
            provider=self.provider,
            budget=RetryBudget(retry.budget_tokens, retry.budget_refund),
            max_pause=retry.max_server_wait,
        )

    def _check_pool_limits(self) -> None:
        """One `Limit` instance cannot count the slots of two servers."""
        pool = self.settings.pool
        assert pool is not None
        specs = [self._server_profile(limit).max_concurrent for limit in pool.limits]
        instances = [id(spec) for spec in specs if isinstance(spec, Limit)]
        if len(instances) != len(set(instances)):
            raise ConfigurationError(
                "invalid argument: max_concurrent: one Limit instance serves several servers of "
                "the pool; pass a function that returns a new Limit, or one per server in "
                "EndpointPool({url: limit})"
            )

    def _make_coalescer(self) -> MicroBatcher[str, list[float]]:
        p = self.profile
        return MicroBatcher(
            send_together(self._embed_batch), p.embed_batch_size, p.embed_batch_wait
        )

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        model = self._model_for(self.settings.embed_model, "embed_model")
        estimate = sum(len(t) for t in texts) // 4 + len(texts)
        (vectors, _), _, _ = await self._pipeline.call(
            "embed", lambda: self._embed(model, texts), estimate, _embed_usage, model
        )
        self._pipeline.check_count(len(texts), len(vectors))
        return vectors


def _workers(endpoint: Endpoint | PoolDispatcher | None, profile: ConcurrencyProfile) -> int:
    """The most requests `endpoint` may have on the wire: what its server said it can take
    when that replaced a fixed default, else what `profile` allows."""
    if (
        isinstance(endpoint, Endpoint)
        and endpoint.discovered is not None
        and isinstance(endpoint.limit, FixedLimit)
    ):
        return endpoint.concurrency_limit
    return profile.max_workers


def _first_limit(profile: ConcurrencyProfile) -> int:
    """The concurrency limit an endpoint starts at under `profile`."""
    spec = profile.max_concurrent
    return spec if isinstance(spec, int) else 1


def _stamped(completion: Completion, attempts: int, latency: float) -> Completion:
    """`completion` with the call's attempts and latency: built directly (a third of what
    `dataclasses.replace` costs on the hot path), by `replace` for a subclass."""
    if type(completion) is not Completion:
        return replace(completion, attempts=attempts, latency=latency)
    c = completion  # every field of Completion: a new field must be added here too
    return Completion(
        text=c.text,
        finish_reason=c.finish_reason,
        usage=c.usage,
        tokens=c.tokens,
        model=c.model,
        attempts=attempts,
        latency=latency,
        reasoning=c.reasoning,
    )


def _usage(completion: Completion) -> Usage | None:
    return completion.usage


def _embed_usage(answer: tuple[list[list[float]], int | None]) -> Usage | None:
    return None if answer[1] is None else Usage(prompt_tokens=answer[1])


def token_from_logprob(text: str, logprob: float, candidates: list[Token] | None = None) -> Token:
    """A `Token` from a provider's log-probability."""
    return Token(text=text, prob=math.exp(logprob), top_candidates=candidates or [])
