"""What a provider implements: the translation primitives `BaseLLMClient` calls, and the
few services it offers them (the SDK client of the running loop, rate-limit learning).

A provider subclasses `BaseLLMClient` and implements the abstract methods here; the rest of
the client (limits, retries, timeouts, batching, stats) is the base class's. The contract in
full is in docs/providers.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmclient.clients._servers import SdkPerServer
    from llmclient.clients.params import ChatRequest, SamplingParams
    from llmclient.config import ClientSettings
    from llmclient.errors import LLMError
    from llmclient.limits.builder import ClientLimits
    from llmclient.limits.endpoint import CapacityQuestion
    from llmclient.types import Completion, StreamEnd

__all__ = ["ProviderContract"]


class ProviderContract(ABC):
    """The primitives a provider implements, and what the base class gives them."""

    settings: ClientSettings
    _sdks: SdkPerServer
    _admission: ClientLimits

    def _supports(self, params: SamplingParams) -> None:
        """Refuse sampling parameters this provider cannot honour (before anything is sent)."""
        return None

    def _check_request(self, request: ChatRequest) -> None:
        """Refuse a request this provider cannot send (e.g. an image form), before sending."""
        return None

    @classmethod
    def _check_settings(cls, settings: ClientSettings) -> None:
        """Refuse settings this provider cannot work with (e.g. a cloud without a key)."""
        return None

    # ----------------------------------------------------------- provider primitives
    @staticmethod
    def _normalize_base_url(url: str) -> str:
        """The provider's canonical form of a user-given base URL (ValueError if it has none)."""
        return url.rstrip("/")

    # An endpoint pool's attempt goes to one of its servers: `_chat`, `_stream`, `_embed`
    # and `_ping` are then called with `base_url=` that server's URL (a provider that takes
    # no `base_url` serves single endpoints only); it sends there with `self._sdk_at(base_url)`
    # and passes each response's headers to `self._learn_rates(headers, base_url)`.
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

    def _wire_body(self, request: ChatRequest) -> Mapping[str, Any]:
        """What the provider is sent for `request` (its SDK arguments): cache keys are made
        of it. By default every field of the request, its parameters that are set."""
        body: dict[str, Any] = {f.name: getattr(request, f.name) for f in fields(request)}
        body["params"] = request.params.model_dump(exclude_defaults=True)
        return body

    @abstractmethod
    def _classify(self, error: Exception) -> LLMError | None:
        """Translate a provider exception into an llmclient error; None if it is not one."""

    @abstractmethod
    def _make_sdk(self) -> Any:
        """A provider SDK client for the running event loop (one is made per loop); for an
        endpoint pool's server, `_make_sdk(base_url=url)` makes one that sends to `url`."""

    @abstractmethod
    async def _close_sdk(self, sdk: Any) -> None:
        """Close an SDK client made by `_make_sdk`, in its own loop."""

    @property
    def _sdk(self) -> Any:
        """The provider SDK client of the running event loop (a pool's: its first server's)."""
        return self._sdks.get()

    def _sdk_at(self, base_url: str | None = None) -> Any:
        """The SDK client for `base_url` (None: the client's own) in the running loop."""
        return self._sdks.get(base_url)

    async def _ping(self, base_url: str | None = None) -> None:
        """A cheap request that shows the server (`base_url`, None: the client's own) is up,
        such as a listing: pools check a server they took out with it. Without one, such a
        server gets requests again after a while."""
        raise NotImplementedError

    def _learn_rates(self, headers: Mapping[str, str], base_url: str | None = None) -> None:
        """Providers pass every response's headers (and the `base_url` it was sent to, in an
        endpoint pool): announced rate limits pace dispatch to that server."""
        endpoint = self._admission.endpoint_at(base_url)
        if endpoint is not None:
            endpoint.learn(headers, self.settings.profile.retry.max_server_wait)

    def _learn_limits(self, headers: Mapping[str, str], base_url: str | None = None) -> None:
        """The old name of `_learn_rates`: providers written for it keep working."""
        self._learn_rates(headers, base_url)

    def _capacity_question(self, url: str) -> CapacityQuestion | None:
        """Providers that can ask `url` what it serves at once return how (`ServerCapacity`).
        The default calls `_capacity_probe`, the method's old name, so providers that
        override that keep working."""
        return self._capacity_probe(url)

    def _capacity_probe(self, url: str) -> CapacityQuestion | None:
        """The old name of `_capacity_question`: override that one instead."""
        return None
