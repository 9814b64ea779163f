"""The simulated server's answers: Ollama and OpenAI chat and embeddings, model listings and the
capacity pages of llama.cpp and vLLM. Each inference answer holds a slot while it is served."""

from __future__ import annotations

import asyncio
import itertools
import time

from . import _protocols as proto
from . import _tools
from ._http import Request
from ._reply import JSON_TYPE, Reply, ServerStats, dumps, ndjson, sse
from ._slots import Slots


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


class Handlers:
    """The route handlers of a `SimulatedServer`, each `(request, reply, arrival)`."""

    def __init__(
        self,
        *,
        slots: Slots,
        stats: ServerStats,
        script: _tools.Script,
        parallel: int,
        latency: float,
        token_latency: float,
        embedding_dim: int,
        models: tuple[str, ...],
    ) -> None:
        self._slots = slots
        self._stats = stats
        self._script = script
        self._parallel = parallel
        self.latency = latency
        self._token_latency = token_latency
        self._embedding_dim = embedding_dim
        self._models = models
        self._ids = itertools.count(1)

    def request_id(self) -> str:
        """A new chat completion id, also given to fault answers."""
        return f"chatcmpl-sim{next(self._ids):08d}"

    async def ollama_generate(self, request: Request, reply: Reply, arrival: float) -> None:
        chat = request.path == "/api/chat"
        try:
            body = proto.json_object(request.body)
            gen = proto.parse_ollama_chat(body) if chat else proto.parse_ollama_generate(body)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")
            return
        calls: list[_tools.Call] = []
        if chat:
            gen, calls = _tools.shape(
                gen, body, openai=False, scripted=self._script.take(), call_id=""
            )
        waited = await self._slots.acquire(reply)
        if waited is None:
            return
        try:
            eval_time = self._token_latency * len(gen.tokens)
            if gen.stream:
                await _sleep(self.latency)
                await reply.start("application/x-ndjson")
                for token in gen.tokens:
                    await _sleep(self._token_latency)
                    await reply.write(ndjson(proto.ollama_chunk(gen, [token], chat=chat)))
                if calls:  # Ollama streams each call whole, before the closing line
                    chunk = proto.ollama_chunk(gen, [], chat=chat)
                    chunk["message"]["tool_calls"] = _tools.ollama_calls(calls)
                    await reply.write(ndjson(chunk))
            else:
                await _sleep(self.latency + eval_time)
            timing = proto.Timing(time.monotonic() - arrival, waited, self.latency, eval_time)
            final = proto.ollama_final(gen, timing, chat=chat, streamed=gen.stream)
            if calls and not gen.stream:
                final["message"]["tool_calls"] = _tools.ollama_calls(calls)
            if gen.stream:
                await reply.end(ndjson(final))
            else:
                await reply.json(final)
        finally:
            self._slots.release()

    async def openai_chat(self, request: Request, reply: Reply, arrival: float) -> None:
        try:
            body = proto.json_object(request.body)
            gen = proto.parse_openai_chat(body)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")
            return
        request_id = self.request_id()
        gen, calls = _tools.shape(
            gen,
            body,
            openai=True,
            scripted=self._script.take(),
            call_id="call_" + request_id.removeprefix("chatcmpl-"),
        )
        if await self._slots.acquire(reply) is None:
            return
        try:
            if not gen.stream:
                await _sleep(self.latency + self._token_latency * len(gen.tokens))
                payload = proto.openai_completion(gen, request_id)
                if calls:
                    payload = _tools.openai_message_calls(payload, calls)
                await reply.json(payload)
                return
            await _sleep(self.latency)
            await reply.start("text/event-stream; charset=utf-8")
            role = {"role": "assistant", "content": ""}
            await reply.write(sse(proto.openai_chunk(gen, request_id, delta=role)))
            for token in gen.tokens:
                await _sleep(self._token_latency)
                await reply.write(sse(proto.openai_chunk(gen, request_id, token=token)))
            for delta in _tools.openai_call_deltas(calls):
                await reply.write(sse(proto.openai_chunk(gen, request_id, delta=delta)))
            tail = sse(proto.openai_chunk(gen, request_id, finish=True))
            if gen.include_usage:
                tail += sse(proto.openai_chunk(gen, request_id, usage=True))
            await reply.end(tail + b"data: [DONE]\n\n")
        finally:
            self._slots.release()

    async def embed(self, request: Request, reply: Reply, arrival: float) -> None:
        try:
            req = proto.parse_embed(proto.json_object(request.body), openai=reply.openai)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")
            return
        self._stats.embed_inputs += len(req.inputs)
        waited = await self._slots.acquire(reply)
        if waited is None:
            return
        try:
            await _sleep(self.latency)
            dim = req.dimensions or self._embedding_dim
            vectors = [proto.embedding(text, dim) for text in req.inputs]
            if reply.openai:
                await reply.json(proto.openai_embeddings(req, vectors))
            else:
                timing = proto.Timing(time.monotonic() - arrival, waited, self.latency, 0.0)
                await reply.json(proto.ollama_embed(req, vectors, timing))
        finally:
            self._slots.release()

    async def listing(self, request: Request, reply: Reply, arrival: float) -> None:
        await reply.json(proto.listing(request.path, self._models))

    async def llamacpp_props(self, request: Request, reply: Reply, arrival: float) -> None:
        if request.path == "/health":
            payload: object = {"status": "ok"}
        else:
            payload = proto.llamacpp_props(self._parallel, self._models[0])
        await reply.page(JSON_TYPE[1], dumps(payload))

    async def vllm_metrics(self, request: Request, reply: Reply, arrival: float) -> None:
        page = proto.vllm_metrics(self._stats.in_flight, self._stats.waiting, self._models[0])
        await reply.page("text/plain; version=0.0.4; charset=utf-8", page.encode())
