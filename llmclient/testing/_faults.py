"""Fault answers of the simulated server: what a failing or misbehaving server or proxy sends.

Each fault is answered in the style of the request's protocol (Ollama native `/api/*` or OpenAI
`/v1/*`), for streamed and whole answers alike where the difference exists. Fault answers are
sent at once, hold no slot and never count as completed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import StrEnum

from . import _protocols as proto
from ._http import DropConnection, Request
from ._reply import JSON_TYPE, Reply, dumps, ndjson, sse


class Fault(StrEnum):
    """Failure kinds the server can answer with instead of serving a request.

    Status answers: `INTERNAL_ERROR` (500), `BUSY` (503, Ollama's "server busy" body),
    `RATE_LIMIT` (429 with `retry-after`, `retry-after-ms` and x-ratelimit headers, on `/api/*`
    too, as a proxy in front of Ollama sends them), `INSUFFICIENT_QUOTA` (429, type and code
    `insufficient_quota`), `INVALID_API_KEY` (401), `ECHO_KEY` (401 whose message echoes the
    request's bearer token: "Incorrect API key provided: KEY. ..." or "unauthorized: KEY").

    Transport faults: `DROP` closes the connection without answering; `HANG` never answers.

    200 answers that are not what the protocol promises: `MALFORMED` (application/json that is
    not JSON), `HTML` (text/html: a proxy's sign-in page), `JSON_ARRAY` (application/json `[]`),
    `MISSING_FIELDS` (JSON objects without the field the answer is for: `choices` and `data`
    for OpenAI chat and embeddings, `message`, `response` and `embeddings` for Ollama chat,
    generate and embed; a stream keeps its framing and its end marker, each chunk lacking the
    field), `CORRUPT_GZIP` (`content-encoding: gzip` on a body that is not gzip).

    Broken answers: `TRUNCATED_STREAM` sends half the reply's deltas and then ends the HTTP body
    cleanly without the protocol's end (OpenAI: no finishing chunk and no `data: [DONE]`;
    Ollama: no `"done": true` line). A whole (non-streamed) answer, embeddings included, is cut
    instead: its head announces the full length, half the body follows and the connection
    closes. `STREAM_ERROR` sends half the deltas, then an error event and ends (OpenAI: `data:
    {"error": {"message", "type": "server_error", "param", "code"}}`; Ollama: the NDJSON line
    `{"error": "..."}`), as the servers do when generation fails mid-stream; a whole answer
    gets the same error as a 500, as the servers answer when generation fails before it.

    `inject(..., echo_key=True)` makes a fault's error message (status answers, the mid-stream
    error event) and the proxy's HTML page end with the request's Authorization header value,
    as some proxies and gateways echo request headers in their error pages.
    """

    INTERNAL_ERROR = "500"
    BUSY = "503"  # Ollama's "server busy" answer
    RATE_LIMIT = "429"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    INVALID_API_KEY = "401"
    DROP = "drop"  # close the connection without answering
    HANG = "hang"  # never answer (holds no slot)
    MALFORMED = "malformed"  # 200, application/json, invalid JSON body
    HTML = "html"  # 200, text/html: a proxy's page
    JSON_ARRAY = "json_array"  # 200, application/json, `[]`
    MISSING_FIELDS = "missing_fields"  # 200, JSON without `choices` / `message` / ...
    CORRUPT_GZIP = "corrupt_gzip"  # 200, content-encoding: gzip, not gzip
    TRUNCATED_STREAM = "truncated_stream"  # half the deltas, then no end marker
    STREAM_ERROR = "stream_error"  # half the deltas, then an error event
    ECHO_KEY = "echo_key"  # 401 echoing the request's API key


QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."
OPENAI_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
OLLAMA_RUN_ERROR = "an error was encountered while running the model: unexpected EOF"
PROXY_HTML = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Web Gateway</title></head>
<body>
<h1>Authentication required</h1>
<p>Your request was intercepted by the corporate web gateway. Sign in to continue.</p>
<form method="post" action="/login"><input name="user"><input name="password" type="password">
<button>Sign in</button></form>
</body>
</html>
"""
# A gzip member header, then a deflate block of the reserved type 3: "invalid block type".
NOT_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x07" + b"\xff" * 16

# The field each answer is for, left out by MISSING_FIELDS ("/v1/models/ID" answers lose "id").
_REQUIRED = {
    "/v1/chat/completions": "choices",
    "/v1/embeddings": "data",
    "/v1/models": "data",
    "/api/chat": "message",
    "/api/generate": "response",
    "/api/embed": "embeddings",
    "/api/tags": "models",
    "/api/ps": "models",
    "/api/version": "version",
}
_GENERATING = frozenset({"/api/chat", "/api/generate", "/v1/chat/completions"})
_EMBEDDING = frozenset({"/api/embed", "/v1/embeddings"})
_DEFAULT_MODEL = "sim-model"


@dataclass(frozen=True, slots=True)
class Target:
    """What a fault answer needs to know about the request it answers."""

    path: str
    openai: bool
    answer: proto.JSONObject  # the whole answer the endpoint would send, unstreamed
    gen: proto.Generation | None  # chat and generate requests only
    request_id: str
    api_key: str
    authorization: str = ""  # the Authorization header, when the fault echoes it

    def echoed(self, message: str) -> str:
        """`message`, ending with the echoed Authorization header if the fault echoes it."""
        return f"{message} (Authorization: {self.authorization})" if self.authorization else message

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed answer."""
        return self.gen is not None and self.gen.stream

    @property
    def required(self) -> str:
        """The field MISSING_FIELDS leaves out."""
        return _REQUIRED.get(self.path, "id")


def _loose_body(request: Request) -> proto.JSONObject:
    try:
        body = json.loads(request.body)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _generation(path: str, body: proto.JSONObject) -> proto.Generation:
    parse = {
        "/api/chat": proto.parse_ollama_chat,
        "/api/generate": proto.parse_ollama_generate,
        "/v1/chat/completions": proto.parse_openai_chat,
    }[path]
    try:
        return parse(body)
    except proto.BadRequest:  # a fault answers whatever was asked, as a proxy would
        return parse({"model": _DEFAULT_MODEL})


def _embedding_answer(path: str, body: proto.JSONObject, dim: int) -> proto.JSONObject:
    openai = path == "/v1/embeddings"
    try:
        req = proto.parse_embed(body, openai=openai)
    except proto.BadRequest:
        req = proto.parse_embed({"model": _DEFAULT_MODEL, "input": ""}, openai=openai)
    vectors = [proto.embedding(text, req.dimensions or dim) for text in req.inputs]
    if openai:
        return proto.openai_embeddings(req, vectors)
    return proto.ollama_embed(req, vectors, proto.Timing(0.0, 0.0, 0.0, 0.0))


def _bearer(request: Request) -> str:
    value = request.header("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else value


def describe(
    request: Request,
    *,
    openai: bool,
    models: tuple[str, ...],
    embedding_dim: int,
    request_id: str,
    echo_key: bool = False,
) -> Target:
    """Read what a request asks, leniently: a fault answers even a request the endpoint would
    refuse with 400."""
    path = request.path
    body = _loose_body(request)
    gen: proto.Generation | None = None
    if path in _GENERATING:
        gen = _generation(path, body)
        if openai:
            answer = proto.openai_completion(gen, request_id)
        else:
            timing = proto.Timing(0.0, 0.0, 0.0, 0.0)
            answer = proto.ollama_final(gen, timing, chat=path == "/api/chat", streamed=False)
    elif path in _EMBEDDING:
        answer = _embedding_answer(path, body, embedding_dim)
    else:
        answer = proto.listing(path, models)
    echoed = (request.header("authorization") or "") if echo_key else ""
    return Target(path, openai, answer, gen, request_id, _bearer(request), echoed)


# --- answers ------------------------------------------------------------------------------------


async def answer(
    fault: Fault, target: Target, reply: Reply, *, retry_after: float | None, rpm: int | None
) -> None:
    """Answer the request described by `target` with `fault`."""
    match fault:
        case Fault.INTERNAL_ERROR:
            message = OPENAI_SERVER_ERROR if target.openai else "internal server error"
            await reply.error(500, target.echoed(message), type_="server_error")
        case Fault.BUSY:
            await reply.error(503, target.echoed(proto.BUSY_MESSAGE), type_="api_error")
        case Fault.RATE_LIMIT:
            wait = 1.0 if retry_after is None else retry_after
            await reply.error(
                429,
                target.echoed(
                    "Rate limit reached for requests per min (RPM). "
                    f"Please try again in {proto.go_duration(wait)}."
                ),
                type_="requests",
                code="rate_limit_exceeded",
                headers=[
                    ("retry-after", f"{wait:g}"),
                    ("retry-after-ms", str(round(wait * 1000))),
                    *proto.limit_headers(rpm or 60, 0, wait),
                ],
            )
        case Fault.INSUFFICIENT_QUOTA:
            await reply.error(
                429,
                target.echoed(QUOTA_MESSAGE),
                type_="insufficient_quota",
                code="insufficient_quota",
            )
        case Fault.INVALID_API_KEY:
            message = (
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
                if target.openai
                else "unauthorized"
            )
            await reply.error(
                401, target.echoed(message), type_="invalid_request_error", code="invalid_api_key"
            )
        case Fault.ECHO_KEY:
            message = (
                f"Incorrect API key provided: {target.api_key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
                if target.openai
                else f"unauthorized: {target.api_key}"
            )
            await reply.error(401, message, type_="invalid_request_error", code="invalid_api_key")
        case Fault.DROP:
            reply.stats.statuses["drop"] += 1
            raise DropConnection
        case Fault.HANG:
            reply.stats.statuses["hang"] += 1
            await asyncio.get_running_loop().create_future()
        case Fault.MALFORMED:
            await reply.raw(200, [JSON_TYPE], b'{"model": "sim-model", "message": {"con')
        case Fault.HTML:
            page = PROXY_HTML
            if target.authorization:  # the gateway shows the request's headers
                shown = f"<p>Authorization: {target.authorization}</p>\n</body>".encode()
                page = page.replace(b"</body>", shown)
            await reply.raw(200, [("content-type", "text/html; charset=utf-8")], page)
        case Fault.JSON_ARRAY:
            await reply.raw(200, [JSON_TYPE], b"[]")
        case Fault.MISSING_FIELDS:
            await _missing_fields(target, reply)
        case Fault.CORRUPT_GZIP:
            headers = [_content_type(target), ("content-encoding", "gzip")]
            if target.stream:
                await reply.head(headers)
                await reply.write(NOT_GZIP)
                await reply.responder.end()
            else:
                await reply.raw(200, headers, NOT_GZIP)
        case Fault.TRUNCATED_STREAM:
            await _truncated(target, reply)
        case Fault.STREAM_ERROR:
            await _stream_error(target, reply)


def _content_type(target: Target) -> tuple[str, str]:
    if not target.stream:
        return JSON_TYPE
    if target.openai:
        return ("content-type", "text/event-stream; charset=utf-8")
    return ("content-type", "application/x-ndjson")


def _deltas(target: Target, tokens: list[str]) -> list[bytes]:
    """The stream's first events: the role chunk (OpenAI) and one delta per token."""
    gen = target.gen
    assert gen is not None
    if target.openai:
        role = {"role": "assistant", "content": ""}
        return [
            sse(proto.openai_chunk(gen, target.request_id, delta=role)),
            *(sse(proto.openai_chunk(gen, target.request_id, token=t)) for t in tokens),
        ]
    chat = target.path == "/api/chat"
    return [ndjson(proto.ollama_chunk(gen, [t], chat=chat)) for t in tokens]


def _half(gen: proto.Generation) -> list[str]:
    return gen.tokens[: max(1, len(gen.tokens) // 2)]


async def _stream(target: Target, reply: Reply, events: list[bytes]) -> None:
    await reply.head([_content_type(target)])
    for event in events:
        await reply.write(event)
    await reply.responder.end()


async def _missing_fields(target: Target, reply: Reply) -> None:
    field = target.required
    gen = target.gen
    if gen is None or not target.stream:
        body = {k: v for k, v in target.answer.items() if k != field}
        await reply.raw(200, [JSON_TYPE], dumps(body))
        return
    if target.openai:
        chunks = [proto.openai_chunk(gen, target.request_id, token=t) for t in gen.tokens]
        chunks.append(proto.openai_chunk(gen, target.request_id, finish=True))
        events = [sse({k: v for k, v in c.items() if k != field}) for c in chunks]
        await _stream(target, reply, [*events, b"data: [DONE]\n\n"])
        return
    chat = target.path == "/api/chat"
    lines = [proto.ollama_chunk(gen, [t], chat=chat) for t in gen.tokens]
    lines.append(
        proto.ollama_final(gen, proto.Timing(0.0, 0.0, 0.0, 0.0), chat=chat, streamed=True)
    )
    await _stream(
        target, reply, [ndjson({k: v for k, v in x.items() if k != field}) for x in lines]
    )


async def _truncated(target: Target, reply: Reply) -> None:
    if target.gen is not None and target.stream:
        await _stream(target, reply, _deltas(target, _half(target.gen)))
        return
    body = dumps(target.answer)
    await reply.head([JSON_TYPE], length=len(body))
    await reply.write(body[: len(body) // 2])
    raise DropConnection  # the connection closes mid-body


async def _stream_error(target: Target, reply: Reply) -> None:
    if target.gen is None or not target.stream:
        message = OPENAI_SERVER_ERROR if target.openai else OLLAMA_RUN_ERROR
        await reply.error(500, target.echoed(message), type_="server_error")
        return
    if target.openai:
        error = sse(proto.openai_error(target.echoed(OPENAI_SERVER_ERROR), "server_error"))
    else:
        error = ndjson(proto.ollama_error(target.echoed(OLLAMA_RUN_ERROR)))
    await _stream(target, reply, [*_deltas(target, _half(target.gen)), error])
