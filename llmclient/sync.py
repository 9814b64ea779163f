"""Blocking twins of the async clients: `SyncClient(client)`, `SyncOpenAIClient`, ...

As openai-python's `OpenAI` beside `AsyncOpenAI`, or httpx's `Client` beside `AsyncClient`:
the same constructor arguments, the same methods without `await`, the same settings, limits
and error types. A sync client wraps an async client and runs it on a private event loop in
a daemon thread (one per sync client, started on first use), so it works in plain scripts,
from many threads at once, and inside a running event loop (a notebook cell). Limits are per
process, across threads and loops: a sync and an async client of one server share them.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, Unpack

from llmclient._runner import LoopThread
from llmclient.clients.base import BaseLLMClient, ClientKeywords
from llmclient.clients.params import CallOptions
from llmclient.config import ClientSettings
from llmclient.limits import EndpointStats
from llmclient.limits.discovery import ServerCapacity
from llmclient.profiles import ConcurrencyProfile
from llmclient.types import Completion, MessageInput, Stats, TextStream, Token, ToolCall, Usage

if TYPE_CHECKING:  # the SDKs load only when a twin is made; the names are used in quotes
    from llmclient.clients.azure import AzureOpenAIClient  # noqa: F401
    from llmclient.clients.ollama import OllamaClient  # noqa: F401
    from llmclient.clients.openai import OpenAIClient  # noqa: F401
    from llmclient.config import BaseUrl

__all__ = [
    "SyncAzureOpenAIClient",
    "SyncClient",
    "SyncOllamaClient",
    "SyncOpenAIClient",
    "SyncTextStream",
]

ClientT = TypeVar("ClientT", bound=BaseLLMClient)
T = TypeVar("T")
History = Sequence[str] | Sequence[MessageInput] | None


class SyncClient(Generic[ClientT]):
    """The blocking face of any `BaseLLMClient`: `SyncClient(OllamaClient("llama3"))`.

    It owns the client it wraps: `close()` (or leaving `with`) closes it, its connections and
    the loop thread. Every call blocks the calling thread until its answer, raising the same
    llmclient errors as the async method. Calls from several threads at once run concurrently,
    under the client's limits. Use the async client itself inside async code: a blocking call
    there holds up the caller's event loop while it waits (which is what a notebook cell does).
    """

    __slots__ = ("__weakref__", "_client", "_finalizer", "_runner", "_streams")

    def __init__(self, client: ClientT) -> None:
        if not isinstance(client, BaseLLMClient):
            raise TypeError(
                f"client={client!r}: must be an llmclient client (a BaseLLMClient), "
                f"got {type(client).__name__}"
            )
        self._client: ClientT = client
        # open streams are closed, outermost generator first, before the loop shuts down
        self._streams: weakref.WeakSet[TextStream] = weakref.WeakSet()
        self._runner = LoopThread(
            f"llmclient-{client.provider}-sync", functools.partial(_close_all, self._streams)
        )
        # a sync client dropped unclosed still ends its thread (whose loop closes the rest)
        self._finalizer = weakref.finalize(self, self._runner.close_soon)

    # -------------------------------------------------------------- the client's state
    @property
    def async_client(self) -> ClientT:
        """The async client this one runs (for `await` code or `run_concurrent`)."""
        return self._client

    @property
    def settings(self) -> ClientSettings:
        """The resolved settings (see `BaseLLMClient.settings_for`)."""
        return self._client.settings

    @property
    def model(self) -> str | None:
        """The chat model requests use by default."""
        return self._client.model

    @property
    def profile(self) -> ConcurrencyProfile:
        """The effective profile."""
        return self._client.profile

    @property
    def endpoint_name(self) -> str:
        """The endpoint for messages, never credentials."""
        return self._client.endpoint_name

    @property
    def max_workers(self) -> int:
        """The most requests this client can have on the wire (helpers size pools to it)."""
        return self._client.max_workers

    @property
    def stats(self) -> Stats:
        """A snapshot of this client's requests so far."""
        return self._client.stats

    @property
    def endpoint_stats(self) -> dict[str, EndpointStats]:
        """Each server's health and attempts by URL."""
        return self._client.endpoint_stats

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._runner.closed

    # ------------------------------------------------------------------- the calls
    def generate(
        self, prompt_or_messages: str | Sequence[MessageInput], **params: Unpack[CallOptions]
    ) -> Completion:
        """One chat completion under the client's limits and retries."""
        return self._run(self._client.generate(prompt_or_messages, **params))

    def generate_answer(
        self, text: str, history: History = None, **extra: Unpack[CallOptions]
    ) -> str:
        """The answer text to `text` after `history` (strings alternate user, assistant)."""
        return self._run(self._client.generate_answer(text, history, **extra))

    def generate_topk_per_token(
        self, text: str, history: History = None, **extra: Unpack[CallOptions]
    ) -> list[Token]:
        """The generated tokens with their top-k alternatives."""
        return self._run(self._client.generate_topk_per_token(text, history, **extra))

    def generate_inputs_prob(
        self, text: str, history: History = None, **extra: Unpack[CallOptions]
    ) -> list[Token]:
        """Log-probabilities of the prompt's own tokens, where the provider can give them."""
        return self._run(self._client.generate_inputs_prob(text, history, **extra))

    def stream(
        self, prompt_or_messages: str | Sequence[MessageInput], **params: Unpack[CallOptions]
    ) -> SyncTextStream:
        """Text deltas of one completion, as a blocking iterator; use it in `with`, which gives
        the slot back at once when the block is left early."""
        self._check_open()
        client = self._client

        async def open_stream() -> TextStream:  # made in the loop that will read it
            return client.stream(prompt_or_messages, **params)

        stream = self._run(open_stream())
        self._streams.add(stream)
        return SyncTextStream(self, stream)

    def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; concurrent calls (from threads) are coalesced."""
        return self._run(self._client.embed(texts))

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Refuse bad sampling parameters (`model` allowed) before any work starts."""
        self._client.check_params(params)

    def asks_server(self, url: str | None = None) -> bool:
        """Whether requests to `url` start by asking its server what it serves at once."""
        return self._client.asks_server(url)

    def server_capacity(self, url: str | None = None) -> ServerCapacity | None:
        """Ask the server how many requests it serves at once (None when it cannot say)."""
        return self._run(self._client.server_capacity(url))

    def discover_limits(self) -> int:
        """Ask the servers now what they can take; return the new `max_workers`."""
        return self._run(self._client.discover_limits())

    # --------------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Finish pending embeddings, close the client and its connections, end the loop
        thread (a stream still open is closed, its slot given back); idempotent."""
        if self._runner.closed:
            return
        streams, client = self._streams, self._client

        async def close_all() -> None:  # streams first: their slots, then the connections
            await _close_all(streams)
            await client.aclose()

        try:
            self._runner.run(close_all())
        finally:
            self._runner.close()
            self._finalizer.detach()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    # -------------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._runner.closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new client")

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run the coroutine `call` on the loop thread and wait for its outcome."""
        if self._runner.closed:
            call.close()
            self._check_open()
        return self._runner.run(call)


async def _close_all(streams: weakref.WeakSet[TextStream]) -> None:
    """Close the streams still open (each gives its slot back), in the loop that reads them."""
    for stream in list(streams):
        with contextlib.suppress(Exception):
            await stream.aclose()


class SyncTextStream(Iterator[str]):
    """Text deltas of one streamed completion, read with a plain `for`.

    Holds its endpoint slot until it ends or closes: `with client.stream(...) as deltas:`.
    After the last delta, `finish_reason` and `usage` hold what the server reported.
    """

    __slots__ = ("_owner", "_stream")

    def __init__(self, owner: SyncClient[Any], stream: TextStream) -> None:
        self._owner = owner  # keeps the sync client, so its loop, alive while the stream is
        self._stream = stream

    @property
    def finish_reason(self) -> str | None:
        """Why the server ended the completion, once it has."""
        return self._stream.finish_reason

    @property
    def usage(self) -> Usage | None:
        """The tokens the server reported at the end, if it did."""
        return self._stream.usage

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls the answer made (`tools=`), assembled once the stream has ended."""
        return self._stream.tool_calls

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        try:
            delta = self._owner._run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return delta

    def close(self) -> None:
        """Stop the stream and give its slot back (nothing to do once the client closed)."""
        if not self._owner.closed:
            self._owner._run(self._stream.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncOpenAIClient(SyncClient["OpenAIClient"]):
    """The blocking twin of `OpenAIClient`, built from the same arguments."""

    __slots__ = ()

    def __init__(self, model: str | None = None, **options: Unpack[ClientKeywords]) -> None:
        from llmclient.clients.openai import OpenAIClient

        super().__init__(OpenAIClient(model, **options))


class SyncOllamaClient(SyncClient["OllamaClient"]):
    """The blocking twin of `OllamaClient`, built from the same arguments."""

    __slots__ = ()

    def __init__(
        self,
        model: str | None = None,
        *,
        host: BaseUrl | None = None,
        keep_alive: float | str | None = None,
        **options: Unpack[ClientKeywords],
    ) -> None:
        from llmclient.clients.ollama import OllamaClient

        super().__init__(OllamaClient(model, host=host, keep_alive=keep_alive, **options))


class SyncAzureOpenAIClient(SyncClient["AzureOpenAIClient"]):
    """The blocking twin of `AzureOpenAIClient`, built from the same arguments."""

    __slots__ = ()

    def __init__(
        self,
        model: str | None = None,
        *,
        api_version: str | None = None,
        **options: Unpack[ClientKeywords],
    ) -> None:
        from llmclient.clients.azure import AzureOpenAIClient

        super().__init__(AzureOpenAIClient(model, api_version=api_version, **options))
