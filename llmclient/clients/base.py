"""`BaseLLMClient`: the public face every provider shares; subclasses only translate.

A client resolves its settings once, has `ClientLimits` build its endpoint (or pool), then
sends every request through its `Pipeline` (limits, timeout, retries, stats). Subclasses
implement the primitives of `_contract.ProviderContract` (`_chat`, `_stream`, `_embed`,
`_classify`, `_make_sdk`, `_close_sdk`); defining `provider` registers them for `client_for`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar, Unpack, cast

from llmclient._aclose import AsyncClosing
from llmclient._checks import check_int
from llmclient._loop_local import LoopLocal
from llmclient._pipeline import Pipeline
from llmclient.cache import client_cache
from llmclient.clients import _sending, _servers, _structured
from llmclient.clients._answers import token_from_logprob
from llmclient.clients._budget import tracker_for
from llmclient.clients._contract import ProviderContract
from llmclient.clients._providers import register_provider
from llmclient.clients.params import (
    CallOptions,
    ChatRequest,
    SamplingOptions,
    SamplingParams,
    conversation,
    messages_from,
    validate_params,
)
from llmclient.config import ClientOptions, ClientSettings, resolve_settings
from llmclient.errors import ConfigurationError, UnsupportedFeatureError
from llmclient.limits import EndpointStats
from llmclient.limits.builder import ClientLimits
from llmclient.limits.discovery import ServerCapacity
from llmclient.limits.spending import Budget, BudgetTracker
from llmclient.profiles import LOCAL_PROFILE, ConcurrencyProfile
from llmclient.telemetry import Observer
from llmclient.types import (
    Completion,
    MessageInput,
    Stats,
    TextStream,
    Token,
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
    budget: Budget | BudgetTracker | None


class BaseLLMClient(ProviderContract, AsyncClosing):
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
        budget: Budget | BudgetTracker | None = None,
        **options: Unpack[ClientConstructorOptions],
    ) -> None:
        """Settings come from `options` (and the environment); sampling keywords
        (`temperature=`, `max_tokens=`, ...) and `params` become defaults for every call.

        `tokenizer` (any object with `encode`/`decode`) is kept as `client.tokenizer` for
        callers that count tokens; llmclient itself never needs one. `keep_reasoning=True`
        makes `generate_answer` return a reasoning model's `<think>` block with the answer.
        `observer` receives this client's request events (see `llmclient.telemetry`), besides
        the observers registered for every client. `budget` caps the tokens (and cost) of
        this client's requests (a `Budget`, or a `BudgetTracker` to share one count between
        clients; default: the `LLMCLIENT_BUDGET_*` variables, if set); see docs/budgets.md.
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
        self._admission = ClientLimits(
            self.settings,
            self.provider,
            self._capacity_question,
            partial(_servers.ping_server, self),
        )
        self.budget = tracker_for(budget, self._admission.backend)  # its on_backend_error too
        self._pipeline = Pipeline(
            self.provider,
            self.endpoint_name,
            self.profile,
            self._admission.get,
            self._classify,
            secret=key.get_secret_value() if key else None,
            observer=observer,
        )
        self._coalescers = LoopLocal(partial(_sending.make_coalescer, self))
        pool = self.settings.pool
        self._sdks = _servers.SdkPerServer(
            self._make_sdk, self._close_sdk, pool.urls if pool is not None else ()
        )
        self._cache = client_cache(
            self.settings.cache, self.settings.cache_mode, f"{self.provider} {self.endpoint_name}"
        )
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

    @classmethod
    def default_profile(cls, base_url: str) -> ConcurrencyProfile:
        """The profile for `base_url` when none is given (see `llmclient.profiles`)."""
        return LOCAL_PROFILE

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
        return self._admission.max_workers

    @property
    def endpoint_name(self) -> str:
        """The endpoint for messages: scheme, host, port and path, never credentials."""
        return self.settings.endpoint

    @property
    def stats(self) -> Stats:
        """A snapshot of this client's requests so far (an endpoint pool's: all servers')."""
        stats = self._pipeline.recorder.stats(self._admission.concurrency_limit)
        cache = self._cache
        if cache is None:
            return stats
        return replace(stats, cache_hits=cache.hits, cache_misses=cache.misses)

    @property
    def endpoint_stats(self) -> dict[str, EndpointStats]:
        """Each server's health and attempts by URL: one per server of an endpoint pool, or
        the one endpoint (always reported healthy: only pools take servers out)."""
        return _servers.endpoint_stats(self, self._admission.latest())

    async def generate(
        self, prompt_or_messages: str | Sequence[MessageInput], **params: Unpack[CallOptions]
    ) -> Completion:
        """One chat completion under the client's limits and retries (or from the cache)."""
        request = self._request(messages_from(prompt_or_messages), params)
        cached = _sending.cache_entry(self, "chat", request)
        if cached is not None:  # a hit costs no slot, no rate budget, no request and no budget
            completion = await cached[0].completion(
                cached[1], partial(_sending.send, self, request)
            )
            if completion.attempts:  # sent (by this call or the identical one it waited for)
                return completion
            return _structured.with_parsed(completion, request.params, self.provider)
        return await _sending.send(self, request)

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
        sent = _sending.sender(self, request)  # what is sent is charged to the budgets
        cached = _sending.cache_entry(self, "stream", request)
        if cached is not None:  # replayed as a stream (free); a miss is stored when it completes
            cache, key = cached
            return TextStream(lambda on_end: cache.stream(key, sent, on_end))
        return TextStream(sent)

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
        model = self._model_for(self.settings.embed_model, "embed_model")
        if self._cache is not None:  # only the texts not in the cache are sent (and charged)
            return await self._cache.embed(model, items, partial(_sending.send_embeddings, self))
        return await _sending.send_embeddings(self, items)

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
            await self._admission.aclose()
            if self.budget is not None:
                await self.budget.aclose()
            if self._cache is not None:
                await self._cache.aclose()

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

    _request = _sending.request  # a method: the request of one call, checked

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new client")

    def asks_server(self, url: str | None = None) -> bool:
        """Whether requests to `url` (default: the base URL) start by asking its server what
        it serves at once: its limit is a default or `"auto"`, `discover_limits` is on, and
        this provider can ask (see `server_capacity`)."""
        return self._admission.capacity_question(url) is not None

    async def server_capacity(self, url: str | None = None) -> ServerCapacity | None:
        """Ask the server (`url`, default the base URL) how many requests it serves at once:
        llama.cpp's `/props`, vLLM's `/metrics`. None when this provider or server cannot say."""
        self._check_open()
        question = self._capacity_question(url or self.settings.base_url)
        return await question() if question is not None else None

    async def discover_limits(self) -> int:
        """Ask the servers now what they can take, where the limit is a default (the first
        request does it anyway, once per event loop); return the new `max_workers`."""
        self._check_open()
        await self._admission.discover()
        return self.max_workers
