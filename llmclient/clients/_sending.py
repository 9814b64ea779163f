"""What a client sends, and around it: the request it builds, the cache lookup, the budget
hold, the embed coalescer.

`BaseLLMClient.generate`, `stream` and `embed` call these with the client; a cache hit never
reaches `send`, and only what is sent is held against (and charged to) the budgets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from llmclient.cache import ClientCache
from llmclient.clients._answers import embed_usage as _embed_usage
from llmclient.clients._answers import stamped as _stamped
from llmclient.clients._answers import usage as _usage
from llmclient.clients._budget import call_usage as _call_usage
from llmclient.clients._budget import no_usage as _no_usage
from llmclient.clients.params import ChatRequest, validate_params
from llmclient.coalesce import MicroBatcher, send_together
from llmclient.limits.spending import budgets_of, hold, metered, metered_stream
from llmclient.types import Completion, Message, StreamEnd

if TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient

__all__ = [
    "cache_entry",
    "embed_batch",
    "make_coalescer",
    "request",
    "send",
    "send_embeddings",
    "sender",
]

Relay = Callable[[Callable[[StreamEnd], None]], AsyncIterator[str]]


def request(
    client: BaseLLMClient, messages: list[Message], params: Mapping[str, Any]
) -> ChatRequest:
    """The request of one call: the client's system prompt and default parameters merged with
    the call's, checked for this provider (a closed client refuses)."""
    client._check_open()
    if client.system_prompt and messages[0].role != "system":
        messages.insert(0, Message("system", client.system_prompt))
    call_params = {k: v for k, v in params.items() if k != "model"}
    merged = client.default_params
    if call_params:
        merged = merged.merged(validate_params(call_params))
        client._supports(merged)
    built = ChatRequest(
        model=client._model_for(params.get("model") or client.model, "model"),
        messages=[m.to_dict() for m in messages],
        params=merged,
    )
    client._check_request(built)
    return built


async def send(client: BaseLLMClient, request: ChatRequest) -> Completion:
    """Send `request` through the client's pipeline: limits, timeout, retries, stats, budgets.
    Only what is sent comes here (a cache hit never does)."""
    budgets = budgets_of(client.budget)
    if budgets:
        held = await hold(budgets, request.prompt_estimate(), request.completion_estimate())
    call = client._pipeline.call(
        "chat",
        partial(client._chat, request),
        request.estimated_tokens(),
        _usage,
        request.model,
        request.messages,
    )
    completion, attempts, elapsed = await (metered(held, call, _call_usage) if budgets else call)
    return _stamped(completion, attempts, elapsed)


def sender(client: BaseLLMClient, request: ChatRequest) -> Relay:
    """The relay that streams `request` through the pipeline, charged to the budgets."""
    estimate = request.estimated_tokens()
    prompt, completion = request.prompt_estimate(), request.completion_estimate()

    def relay(on_end: Callable[[StreamEnd], None]) -> AsyncIterator[str]:
        return client._pipeline.stream(
            partial(client._stream, request), estimate, on_end, request.model, request.messages
        )

    if client.budget is None and not budgets_of(None):
        return relay

    def sent(on_end: Callable[[StreamEnd], None]) -> AsyncIterator[str]:
        return metered_stream(client.budget, prompt, completion, relay, on_end)

    return sent


def cache_entry(
    client: BaseLLMClient, kind: str, request: ChatRequest
) -> tuple[ClientCache, str] | None:
    """The cache and key of one call of `request`, made of the body the provider is sent;
    None when there is no cache or its mode skips this call."""
    cache = client._cache
    if cache is None:
        return None
    key = cache.key(kind, request.model, client._wire_body(request), request.params)
    return None if key is None else (cache, key)


async def send_embeddings(client: BaseLLMClient, items: list[str]) -> list[list[float]]:
    """Embed `items` through this loop's coalescer, held against the budgets."""
    budgets = budgets_of(client.budget)
    if not budgets:
        return await client._coalescers.get().submit(items)
    held = await hold(budgets, _embed_estimate(items), 0)
    return await metered(held, client._coalescers.get().submit(items), _no_usage)


def make_coalescer(client: BaseLLMClient) -> MicroBatcher[str, list[float]]:
    """The embed coalescer of one event loop, sized by the client's profile."""
    p = client.profile
    return MicroBatcher(
        send_together(partial(embed_batch, client)), p.embed_batch_size, p.embed_batch_wait
    )


async def embed_batch(client: BaseLLMClient, texts: list[str]) -> list[list[float]]:
    """One provider request for the coalesced `texts`, through the pipeline."""
    model = client._model_for(client.settings.embed_model, "embed_model")
    (vectors, _), _, _ = await client._pipeline.call(
        "embed", partial(client._embed, model, texts), _embed_estimate(texts), _embed_usage, model
    )
    client._pipeline.check_count(len(texts), len(vectors))
    return vectors


def _embed_estimate(texts: list[str]) -> int:
    """The tokens of `texts` before they are sent (tpm and budgets): characters / 4, plus one
    per text."""
    return sum(len(t) for t in texts) // 4 + len(texts)
