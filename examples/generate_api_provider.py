"""A third provider, a JSON completion API (as Ollama's /api/generate) over httpx: it translates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx

import llmclient.errors as e
from llmclient import BaseLLMClient, ChatRequest, Completion, StreamEnd, Usage

Parts = AsyncIterator[str | StreamEnd]
Vectors = tuple[list[list[float]], int | None]


class GenerateAPIClient(BaseLLMClient):
    provider: ClassVar[str] = "genapi"  # client_for("genapi"), LLMCLIENT_GENAPI_* variables
    default_base_url: ClassVar[str] = "http://127.0.0.1:11434"
    native_env: ClassVar[dict[str, str]] = {"base_url": "GENAPI_HOST"}

    def _make_sdk(self, base_url: str | None = None) -> httpx.AsyncClient:  # one per loop
        url = base_url or self.settings.base_url  # base_url: a server of an endpoint pool
        return httpx.AsyncClient(base_url=url, timeout=self.profile.timeout)

    async def _close_sdk(self, sdk: httpx.AsyncClient) -> None:
        await sdk.aclose()

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        system = "\n".join(m["content"] for m in request.messages if m["role"] == "system")
        prompt = "\n\n".join(m["content"] for m in request.messages if m["role"] != "system")
        p, body = request.params, {"model": request.model, "prompt": prompt, "stream": stream}
        options = {"temperature": p.temperature, "num_predict": p.max_tokens, "seed": p.seed}
        body["options"] = {k: v for k, v in options.items() if v is not None}
        return {**body, "system": system} if system else body

    async def _chat(self, request: ChatRequest, base_url: str | None = None) -> Completion:
        answer = await self._sdk_at(base_url).post("/api/generate", json=self._body(request, False))
        data = (await self._checked(answer, base_url)).json()
        usage = Usage(data.get("prompt_eval_count", 0), data.get("eval_count", 0))
        return Completion(data["response"], data.get("done_reason"), usage, model=data["model"])

    async def _stream(self, request: ChatRequest, base_url: str | None = None) -> Parts:
        body = self._body(request, stream=True)
        async with self._sdk_at(base_url).stream("POST", "/api/generate", json=body) as answer:
            async for line in (await self._checked(answer, base_url)).aiter_lines():
                part = json.loads(line) if line.strip() else {}
                if part.get("response"):
                    yield part["response"]
                if part.get("done"):
                    usage = Usage(part.get("prompt_eval_count", 0), part.get("eval_count", 0))
                    yield StreamEnd(part.get("done_reason"), usage)

    async def _embed(self, model: str, texts: list[str], base_url: str | None = None) -> Vectors:
        body = {"model": model, "input": texts}
        answer = await self._sdk_at(base_url).post("/api/embed", json=body)
        data = (await self._checked(answer, base_url)).json()
        return data["embeddings"], data.get("prompt_eval_count")

    async def _checked(self, answer: httpx.Response, base_url: str | None) -> httpx.Response:
        self._learn_rates(answer.headers, base_url)  # rate-limit headers pace that server
        if (status := answer.status_code) < 400:
            return answer
        await answer.aread()  # a stream's error body too
        server = e.ServerError if status >= 500 or status in (408, 409) else e.InvalidRequestError
        kinds = {401: e.AuthenticationError, 429: e.RateLimitError, 503: e.ServerBusyError}
        after = float(wait) if (wait := answer.headers.get("retry-after", "")).isdigit() else None
        error = kinds.get(status, server)
        raise error(answer.text, provider=self.provider, status_code=status, retry_after=after)

    def _classify(self, error: Exception) -> e.LLMError | None:
        if isinstance(error, httpx.TimeoutException):
            return e.RequestTimeoutError("the request timed out", provider=self.provider)
        if isinstance(error, httpx.TransportError):
            return e.LLMConnectionError(f"connection failed: {error!r}", provider=self.provider)
        if isinstance(error, KeyError | ValueError):  # not the JSON this API promises
            return e.MalformedResponseError(f"unexpected answer: {error!r}", provider=self.provider)
        return None
