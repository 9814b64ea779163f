"""`BaseLLMClient`: the policy every request goes through, whatever the provider.

Around each provider call it applies, once: the endpoint's pause gate, rpm/tpm buckets and
concurrency slot, a timeout, tenacity retries, stats and logging. Subclasses only translate
requests, responses and errors (`_chat`, `_stream`, `_embed`, `_classify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import time
from abc import abstractmethod
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

from tenacity import RetryCallState, RetryError

from llmclient._aclose import AsyncClosing
from llmclient.clients.params import SamplingParams, validate_params
from llmclient.coalesce import MicroBatcher, send_together
from llmclient.config import ClientSettings, resolve_settings
from llmclient.errors import (
    ConfigurationError,
    LLMError,
    RateLimitError,
    RequestTimeoutError,
    RetriesExhaustedError,
    ServerBusyError,
    UnsupportedFeatureError,
)
from llmclient.limits import Endpoint, shared_endpoint
from llmclient.profiles import ConcurrencyProfile, is_local_endpoint
from llmclient.retry import build_retrying
from llmclient.types import Completion, Message, MessageInput, Stats, Token, percentile

__all__ = ["BaseLLMClient", "ChatRequest", "TextStream"]

logger = logging.getLogger("llmclient")
T = TypeVar("T")
_DEFAULT_COMPLETION_ESTIMATE = 256  # tokens charged to tpm when max_tokens is not given
_SAMPLES = 4096  # latencies kept for the stats percentiles


@dataclass(slots=True)
class ChatRequest:
    """What a provider needs for one chat call, already validated."""

    model: str
    messages: list[dict[str, str]]
    params: SamplingParams

    def estimated_tokens(self) -> int:
        """Prompt characters / 4 plus the completion budget: the tpm charge before the call."""
        prompt = sum(len(m["content"]) for m in self.messages) // 4 + 1
        return prompt + (self.params.max_tokens or _DEFAULT_COMPLETION_ESTIMATE)


class _Recorder:
    """Counters and recent latencies behind `client.stats`."""

    __slots__ = (
        "completed",
        "failed",
        "in_flight",
        "latencies",
        "rate_limited",
        "retries",
        "waiting",
        "waits",
    )

    def __init__(self) -> None:
        self.in_flight = self.waiting = self.completed = 0
        self.failed = self.retries = self.rate_limited = 0
        self.latencies: deque[float] = deque(maxlen=_SAMPLES)
        self.waits: deque[float] = deque(maxlen=_SAMPLES)


class _Lease:
    """One attempt's hold on the endpoint: admitted, on the wire, then finished exactly once."""

    __slots__ = ("charge", "endpoint", "finished", "recorder", "started", "waited")

    def __init__(
        self, endpoint: Endpoint, recorder: _Recorder, charge: float, waited: float
    ) -> None:
        self.endpoint = endpoint
        self.recorder = recorder
        self.charge = charge
        self.waited = waited
        self.started = time.monotonic()
        self.finished = False
        recorder.in_flight += 1

    def finish(self, error: LLMError | None, used_tokens: int | None = None) -> float:
        """Release the slot, settle tpm, record the outcome; return the time on the wire."""
        latency = time.monotonic() - self.started
        if self.finished:
            return latency
        self.finished = True
        self.recorder.in_flight -= 1
        overloaded = isinstance(error, RateLimitError | ServerBusyError | RequestTimeoutError)
        self.endpoint.release(latency, overloaded, sample=error is None or overloaded)
        if error is None:
            self.recorder.latencies.append(latency)
            self.endpoint.rate.settle(self.charge, used_tokens)
        elif isinstance(error, RateLimitError | ServerBusyError):
            self.recorder.rate_limited += 1
            if isinstance(error, RateLimitError) and error.retry_after:
                self.endpoint.pause(error.retry_after)
        return latency


class TextStream(AsyncIterator[str], AsyncClosing):
    """Text deltas of one streamed completion; holds its slot until exhausted or closed.

    Iterate it with `async for`, or use `async with client.stream(...) as deltas:` to be sure
    the slot is released when leaving early.
    """

    __slots__ = ("_deltas",)

    def __init__(self, deltas: AsyncIterator[str]) -> None:
        self._deltas = deltas

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        return await anext(self._deltas)

    async def aclose(self) -> None:
        """Stop the stream and release its slot."""
        close = getattr(self._deltas, "aclose", None)
        if close is not None:
            await close()


class BaseLLMClient(AsyncClosing):
    """A client that owns the concurrency, rate, retry and timeout policy for its endpoint.

    Subclasses set `provider`, `default_base_url` and `native_env`, pick a default profile,
    and implement the four translation primitives.
    """

    provider: ClassVar[str]
    default_base_url: ClassVar[str]
    native_env: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        embed_model: str | None = None,
        system_prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        topk_per_token: int = 5,
        profile: ConcurrencyProfile | None = None,
        max_concurrent: int | str | None = None,
        rpm: float | None = None,
        tpm: int | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        max_elapsed: float | None = None,
        share_limits: bool | None = None,
    ) -> None:
        if profile is not None and not isinstance(profile, ConcurrencyProfile):
            raise ConfigurationError(
                f"invalid argument: profile={profile!r}: must be a ConcurrencyProfile"
            )
        if (
            isinstance(topk_per_token, bool)
            or not isinstance(topk_per_token, int)
            or not (1 <= topk_per_token <= 20)
        ):
            raise ConfigurationError(
                f"invalid argument: topk_per_token={topk_per_token!r}: must be an integer 1..20"
            )
        self.settings: ClientSettings = resolve_settings(
            self.provider,
            {
                "model": model,
                "base_url": self._normalize_base_url(base_url) if base_url else None,
                "api_key": api_key,
                "embed_model": embed_model,
                "max_concurrent": max_concurrent,
                "rpm": rpm,
                "tpm": tpm,
                "timeout": timeout,
                "max_attempts": max_attempts,
                "max_elapsed": max_elapsed,
                "share_limits": share_limits,
            },
            native_env=self.native_env,
            default_base_url=self.default_base_url,
            default_profile=self.default_profile,
            profile=profile,
        )
        self.settings = self.settings.model_copy(
            update={"base_url": self._normalize_base_url(self.settings.base_url)}
        )
        self.system_prompt = system_prompt
        self.default_params = validate_params(dict(params or {}))
        self.topk_per_token = topk_per_token
        self._recorder = _Recorder()
        self._endpoint_cache: tuple[asyncio.AbstractEventLoop, Endpoint] | None = None
        self._coalescer_cache: (
            tuple[asyncio.AbstractEventLoop, MicroBatcher[str, list[float]]] | None
        ) = None
        self._closed = False

    # ----------------------------------------------------------- provider primitives
    @classmethod
    def default_profile(cls, base_url: str) -> ConcurrencyProfile:
        """The profile for `base_url` when none is given (see `llmclient.profiles`)."""
        from llmclient.profiles import LOCAL_PROFILE

        return LOCAL_PROFILE

    @staticmethod
    def _normalize_base_url(url: str) -> str:
        """The provider's canonical form of a user-given base URL."""
        return url.rstrip("/")

    @abstractmethod
    async def _chat(self, request: ChatRequest) -> Completion:
        """Send one chat request to the provider and translate the answer."""

    @abstractmethod
    def _stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """Stream one chat request's text deltas from the provider."""

    @abstractmethod
    async def _embed(self, model: str, texts: list[str]) -> tuple[list[list[float]], int | None]:
        """Embed `texts` in one provider request; return the vectors and tokens used."""

    @abstractmethod
    def _classify(self, error: Exception) -> LLMError | None:
        """Translate a provider exception into an llmclient error; None if it is not one."""

    @abstractmethod
    async def _close(self) -> None:
        """Close the provider SDK's client."""

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
    def endpoint_name(self) -> str:
        """The endpoint for messages: scheme, host, port and path, never credentials."""
        parts = urlsplit(self.settings.base_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    @property
    def stats(self) -> Stats:
        """A snapshot of this client's requests so far."""
        rec = self._recorder
        latencies = sorted(rec.latencies)
        waits = sorted(rec.waits)
        cache = self._endpoint_cache
        limit = cache[1].concurrency.limit if cache else self._initial_limit()
        return Stats(
            in_flight=rec.in_flight,
            waiting=rec.waiting,
            completed=rec.completed,
            failed=rec.failed,
            retries=rec.retries,
            rate_limited=rec.rate_limited,
            latency_p50=percentile(latencies, 0.50),
            latency_p95=percentile(latencies, 0.95),
            latency_p99=percentile(latencies, 0.99),
            wait_p50=percentile(waits, 0.50),
            wait_p95=percentile(waits, 0.95),
            concurrency_limit=limit,
        )

    async def generate(
        self, prompt_or_messages: str | Sequence[MessageInput], **params: Any
    ) -> Completion:
        """One chat completion under the client's limits and retries."""
        request = self._request(prompt_or_messages, params)
        completion, attempts, elapsed = await self._run(
            "chat",
            lambda: self._chat(request),
            request.estimated_tokens(),
            lambda c: c.usage.total_tokens if c.usage else None,
        )
        return replace(completion, attempts=attempts, latency=elapsed)

    async def generate_answer(
        self,
        text: str,
        history: Sequence[str] | Sequence[MessageInput] | None = None,
        **extra: Any,
    ) -> str:
        """The answer text to `text` after `history` (strings alternate user, assistant)."""
        completion = await self.generate(self._conversation(text, history), **extra)
        return completion.text

    async def generate_topk_per_token(
        self,
        text: str,
        history: Sequence[str] | Sequence[MessageInput] | None = None,
        **extra: Any,
    ) -> list[Token]:
        """The generated tokens (one by default) with their top-k alternatives.

        `top_logprobs` (default: the client's `topk_per_token`) sets k; `max_tokens`
        defaults to 1.
        """
        params = {"max_tokens": 1, "top_logprobs": self.topk_per_token, **extra, "logprobs": True}
        completion = await self.generate(self._conversation(text, history), **params)
        if not completion.tokens:
            raise UnsupportedFeatureError(
                "the server returned no log-probabilities; it may not support logprobs",
                provider=self.provider,
                endpoint=self.endpoint_name,
            )
        return completion.tokens

    async def generate_inputs_prob(
        self,
        text: str,
        history: Sequence[str] | Sequence[MessageInput] | None = None,
        **extra: Any,
    ) -> list[Token]:
        """Log-probabilities of the prompt's own tokens, where the provider can give them."""
        raise UnsupportedFeatureError(
            f"{type(self).__name__} cannot return prompt log-probabilities: the {self.provider} "
            "chat API only scores generated tokens",
            provider=self.provider,
        )

    def stream(self, prompt_or_messages: str | Sequence[MessageInput], **params: Any) -> TextStream:
        """Text deltas of one completion; the request holds its slot until the stream ends."""
        request = self._request(prompt_or_messages, params)
        return TextStream(self._stream_deltas(request))

    async def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """One vector per text, in order.

        Texts from all concurrent `embed` calls within the profile's `embed_batch_wait` are
        sent together, up to `embed_batch_size` per provider request.
        """
        items = self._embed_inputs(texts)
        if not items:
            return []
        self._model_for(self.settings.embed_model, "embed_model")
        return await self._coalescer().submit(items)

    async def map(
        self,
        prompts: Iterable[str] | AsyncIterable[str],
        *,
        return_exceptions: bool = False,
        progress_bar: bool | None = False,
        desc: str = "generating",
        **params: Any,
    ) -> list[Any]:
        """`generate_answer` for every prompt, answers in input order (see `run_concurrent`).

        The client's own limit bounds the calls; `return_exceptions=True` puts each failed
        prompt's exception in its place instead of raising the first one.
        """
        from llmclient.mapping import run_concurrent

        self._check_params(params)
        return await run_concurrent(
            functools.partial(self._answer_with, params),
            prompts,
            desc=desc,
            progress_bar=progress_bar,
            max_concurrent=self._workers(),
            return_exceptions=return_exceptions,
        )

    async def amap(
        self,
        prompts: Iterable[str] | AsyncIterable[str],
        *,
        return_exceptions: bool = False,
        **params: Any,
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield `(index, answer)` as each prompt is answered, in completion order.

        To stop early and cancel the calls still running, iterate inside
        `contextlib.aclosing(client.amap(...))`.
        """
        from llmclient.mapping import iterate_concurrent

        self._check_params(params)
        pairs = iterate_concurrent(
            functools.partial(self._answer_with, params),
            prompts,
            max_concurrent=self._workers(),
            return_exceptions=return_exceptions,
        )
        async with contextlib.aclosing(pairs):
            async for pair in pairs:
                yield pair

    def _workers(self) -> int:
        """Helper workers for this client: enough to fill its limit, no more."""
        limit = self.profile.max_concurrent
        return limit if isinstance(limit, int) else self.profile.adaptive_max

    def _check_params(self, params: Mapping[str, Any]) -> None:
        """Refuse bad sampling parameters before a helper starts any work."""
        validate_params({k: v for k, v in params.items() if k != "model"})

    async def _answer_with(self, params: Mapping[str, Any], prompt: str) -> str:
        return await self.generate_answer(prompt, **params)

    async def aclose(self) -> None:
        """Finish pending embeddings, close the provider connection; no use afterwards."""
        if not self._closed:
            self._closed = True
            cache = self._coalescer_cache
            if cache is not None and cache[0] is asyncio.get_running_loop():
                await cache[1].flush()
            await self._close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.endpoint_name!r}, "
            f"profile={self.profile.name!r}, max_concurrent={self.profile.max_concurrent!r})"
        )

    # ------------------------------------------------------------- request building
    def _model_for(self, model: str | None, setting: str) -> str:
        if model:
            return model
        raise ConfigurationError(
            f"no {setting} set for {type(self).__name__}: pass {setting}=... or set "
            f"LLMCLIENT_{self.provider.upper()}_{setting.upper()}"
        )

    def _conversation(
        self, text: str, history: Sequence[str] | Sequence[MessageInput] | None
    ) -> list[Message]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        messages: list[Message] = []
        if history:
            if all(isinstance(turn, str) for turn in history):
                if len(history) % 2:
                    raise ValueError(
                        f"history has {len(history)} strings: they alternate user, assistant, "
                        "so their number must be even"
                    )
                roles = ("user", "assistant")
                messages = [
                    Message(roles[i % 2], turn)  # type: ignore[arg-type]
                    for i, turn in enumerate(history)
                ]
            else:
                messages = [Message.coerce(turn) for turn in history]  # type: ignore[arg-type]
        messages.append(Message("user", text))
        return messages

    def _request(
        self, prompt_or_messages: str | Sequence[MessageInput], params: Mapping[str, Any]
    ) -> ChatRequest:
        self._check_open()
        if isinstance(prompt_or_messages, str):
            messages = [Message("user", prompt_or_messages)]
        else:
            messages = [Message.coerce(m) for m in prompt_or_messages]
            if not messages:
                raise ValueError("messages must not be empty")
        if self.system_prompt and messages[0].role != "system":
            messages.insert(0, Message("system", self.system_prompt))
        model = params.get("model") or self.model
        call_params = {k: v for k, v in params.items() if k != "model"}
        merged = (
            self.default_params.merged(validate_params(call_params))
            if call_params
            else self.default_params
        )
        return ChatRequest(
            model=self._model_for(model, "model"),
            messages=[m.to_dict() for m in messages],
            params=merged,
        )

    def _embed_inputs(self, texts: str | Sequence[str]) -> list[str]:
        self._check_open()
        items = [texts] if isinstance(texts, str) else list(texts)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise ValueError(f"texts[{index}] must be a string, got {type(item).__name__}")
        return items

    def _scrub(self, text: str) -> str:
        """Remove the API key from server-provided text before it reaches an error or a log."""
        key = self.settings.api_key
        secret = key.get_secret_value() if key else ""
        return text.replace(secret, "***") if secret else text

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new client")

    # ------------------------------------------------------------------ execution
    def _initial_limit(self) -> int:
        limit = self.profile.max_concurrent
        return limit if isinstance(limit, int) else 1

    def _endpoint_key(self) -> tuple[str, ...]:
        """Clients with equal keys share limits: same server, and same account for clouds."""
        parts = urlsplit(self.settings.base_url)
        origin = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
        key = self.settings.api_key
        if key is None or is_local_endpoint(self.settings.base_url):
            return (origin,)
        return (origin, hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:16])

    def _endpoint(self) -> Endpoint:
        loop = asyncio.get_running_loop()
        cache = self._endpoint_cache
        if cache is not None and cache[0] is loop:
            return cache[1]
        p = self.profile
        if p.share_limits:
            endpoint = shared_endpoint(
                self._endpoint_key(),
                self.endpoint_name,
                p.max_concurrent,
                p.rpm,
                p.tpm,
                p.adaptive_max,
            )
        else:
            endpoint = Endpoint(self.endpoint_name, p.max_concurrent, p.rpm, p.tpm, p.adaptive_max)
        self._endpoint_cache = (loop, endpoint)
        return endpoint

    def _coalescer(self) -> MicroBatcher[str, list[float]]:
        loop = asyncio.get_running_loop()
        cache = self._coalescer_cache
        if cache is None or cache[0] is not loop:
            p = self.profile
            handler = send_together(self._embed_batch)
            cache = (loop, MicroBatcher(handler, p.embed_batch_size, p.embed_batch_wait))
            self._coalescer_cache = cache
        return cache[1]

    def _translate(self, error: BaseException) -> LLMError | None:
        if isinstance(error, LLMError):
            return error
        if not isinstance(error, Exception):
            return None  # cancellation, KeyboardInterrupt: never translated
        if isinstance(error, TimeoutError):
            translated: LLMError | None = RequestTimeoutError(
                f"no answer within {self.profile.timeout:g}s", provider=self.provider
            )
        else:
            translated = self._classify(error)
        if translated is not None and translated.endpoint is None:
            translated.endpoint = self.endpoint_name
            translated.args = (translated._render(),)
        return translated

    async def _lease(self, estimated_tokens: int) -> _Lease:
        endpoint = self._endpoint()
        recorder = self._recorder
        recorder.waiting += 1
        asked = time.monotonic()
        try:
            charge = await endpoint.admit(estimated_tokens)
        finally:
            recorder.waiting -= 1
        waited = time.monotonic() - asked
        recorder.waits.append(waited)
        return _Lease(endpoint, recorder, charge, waited)

    async def _attempt(
        self,
        operation: str,
        send: Callable[[], Awaitable[T]],
        estimated_tokens: int,
        used_tokens: Callable[[T], int | None],
    ) -> T:
        lease = await self._lease(estimated_tokens)
        try:
            async with asyncio.timeout(self.profile.timeout):
                result = await send()
        except BaseException as exc:
            error = self._translate(exc)
            latency = lease.finish(error)
            if error is None:
                raise
            self._log_attempt(operation, lease, latency, error)
            raise error from exc
        latency = lease.finish(None, used_tokens(result))
        self._log_attempt(operation, lease, latency, None)
        return result

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> tuple[T, int, float]:
        """Run `attempt` under the retry policy; return its result, attempts made, time taken."""
        started = time.monotonic()
        retrying = build_retrying(self.profile.retry, self._log_retry)
        attempts = 0
        try:
            async for state in retrying:
                with state:
                    attempts = state.retry_state.attempt_number
                    result = await attempt()
        except RetryError as exhausted:
            self._recorder.failed += 1
            last = exhausted.last_attempt.exception()
            assert isinstance(last, LLMError)
            raise RetriesExhaustedError(attempts, last, time.monotonic() - started) from last
        except LLMError as error:
            self._recorder.failed += 1
            error.attempts = attempts
            raise
        except BaseException:
            self._recorder.failed += 1
            raise
        return result, attempts, time.monotonic() - started

    async def _run(
        self,
        operation: str,
        send: Callable[[], Awaitable[T]],
        estimated_tokens: int,
        used_tokens: Callable[[T], int | None],
    ) -> tuple[T, int, float]:
        """One provider call with limits and retries; counted as completed on success."""
        outcome = await self._with_retries(
            lambda: self._attempt(operation, send, estimated_tokens, used_tokens)
        )
        self._recorder.completed += 1
        return outcome

    async def _stream_deltas(self, request: ChatRequest) -> AsyncIterator[str]:
        """Open the stream with retries until its first delta; then relay deltas as they come."""
        timeout = self.profile.timeout

        async def open_stream() -> tuple[_Lease, AsyncIterator[str], str | None]:
            lease = await self._lease(request.estimated_tokens())
            deltas = self._stream(request)
            try:
                async with asyncio.timeout(timeout):
                    first: str | None = await anext(deltas, None)
            except BaseException as exc:
                error = self._translate(exc)
                lease.finish(error)
                await _close_quietly(deltas)
                if error is None:
                    raise
                raise error from exc
            return lease, deltas, first

        (lease, deltas, first), _, _ = await self._with_retries(open_stream)
        error: LLMError | None = None
        try:
            if first is None:
                return
            yield first
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        delta = await anext(deltas)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    error = self._translate(exc)
                    if error is None:
                        raise
                    raise error from exc
                yield delta
        finally:
            lease.finish(error)
            await _close_quietly(deltas)
            if error is None:
                self._recorder.completed += 1
            else:
                self._recorder.failed += 1

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        model = self._model_for(self.settings.embed_model, "embed_model")
        estimate = sum(len(t) for t in texts) // 4 + len(texts)
        (vectors, _), _, _ = await self._run(
            "embed", lambda: self._embed(model, texts), estimate, lambda r: r[1]
        )
        if len(vectors) != len(texts):
            raise LLMError(
                f"asked for {len(texts)} embeddings, got {len(vectors)}",
                provider=self.provider,
                endpoint=self.endpoint_name,
            )
        return vectors

    # -------------------------------------------------------------------- logging
    def _log_attempt(
        self, operation: str, lease: _Lease, latency: float, error: LLMError | None
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            outcome = "ok" if error is None else f"{error.kind} {error.status_code or ''}".strip()
            logger.debug(
                "%s %s: %s %s in %.0f ms (waited %.0f ms for a slot)",
                self.provider,
                self.endpoint_name,
                operation,
                outcome,
                latency * 1000,
                lease.waited * 1000,
            )

    def _log_retry(self, state: RetryCallState) -> None:
        self._recorder.retries += 1
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        reason = f"{error.kind}: {error.message}" if isinstance(error, LLMError) else repr(error)
        logger.warning(
            "%s %s: attempt %d failed (%s); retrying in %.2fs",
            self.provider,
            self.endpoint_name,
            state.attempt_number,
            reason,
            wait,
        )


async def _close_quietly(iterator: AsyncIterator[str]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a broken stream must not hide the real error
            logger.debug("error while closing a stream", exc_info=True)


def token_from_logprob(text: str, logprob: float, candidates: list[Token] | None = None) -> Token:
    """A `Token` from a provider's log-probability."""
    return Token(text=text, prob=math.exp(logprob), top_candidates=candidates or [])
