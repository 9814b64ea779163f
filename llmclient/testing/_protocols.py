"""Ollama and OpenAI wire formats for the simulated server.

Owns request interpretation (model, prompt, limits, logprobs, stream flags), the deterministic
content (reply tokens, logprobs, embeddings) and the JSON shapes of responses and error bodies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

REPLY_PREFIX = "Simulated reply to: "
THINKING = "<think>A short question; answer it plainly.</think> "
"""What a model whose name contains "think" writes before its answer, as reasoning models do."""
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
OLLAMA_VERSION = "0.12.11"
MAX_TOP_LOGPROBS = 20

# A token is a word with the whitespace before it; trailing whitespace joins the last token,
# so "".join(tokens) == text for any text that starts with a non-space character.
_TOKEN = re.compile(r"\s*\S+(?:\s+\Z)?")

JSONObject = dict[str, Any]


class BadRequest(Exception):
    """A request the server answers with 400 and this message."""


def json_object(raw: bytes) -> JSONObject:
    """A request body that must be one JSON object; BadRequest otherwise."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def tokenize(text: str) -> list[str]:
    """Split text into word tokens whose concatenation is the text."""
    return _TOKEN.findall(text)


def _word_count(text: str) -> int:
    return len(text.split())


def _content_text(content: object) -> str:
    """Text of a message content: a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


@dataclass(frozen=True, slots=True)
class Generation:
    """What one chat or generate request produces, whatever the protocol."""

    model: str
    tokens: list[str]
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    top_logprobs: int | None  # None: no logprobs asked
    stream: bool
    include_usage: bool  # OpenAI stream_options.include_usage

    @property
    def text(self) -> str:
        """The full reply."""
        return "".join(self.tokens)


def _require_model(body: JSONObject) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required")
    return model


def _optional_int(body: JSONObject, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be an integer")
    return value


def _generation(
    *,
    model: str,
    prompt: str,
    prompt_words: int,
    max_tokens: int | None,
    top_logprobs: int | None,
    stream: bool,
    include_usage: bool = False,
) -> Generation:
    tokens = tokenize((THINKING if "think" in model else "") + REPLY_PREFIX + prompt)
    finish_reason = "stop"
    if max_tokens is not None and 0 <= max_tokens < len(tokens):
        tokens = tokens[:max_tokens]
        finish_reason = "length"
    if top_logprobs is not None:
        top_logprobs = max(0, min(top_logprobs, MAX_TOP_LOGPROBS))
    return Generation(
        model=model,
        tokens=tokens,
        finish_reason=finish_reason,
        prompt_tokens=max(1, prompt_words),
        top_logprobs=top_logprobs,
        stream=stream,
        include_usage=include_usage,
    )


def _chat_prompt(body: JSONObject) -> tuple[str, int]:
    """The last user message's text and the word count of all messages."""
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages must be a list of objects")
    texts = [_content_text(m.get("content")) for m in messages]
    last_user = next(
        (
            text
            for m, text in zip(reversed(messages), reversed(texts), strict=True)
            if m.get("role") == "user"
        ),
        "",
    )
    return last_user, sum(_word_count(text) for text in texts)


def _ollama_top_logprobs(body: JSONObject) -> int | None:
    if not body.get("logprobs"):
        return None
    return _optional_int(body, "top_logprobs") or 0


def parse_ollama_chat(body: JSONObject) -> Generation:
    """Interpret a native `/api/chat` request (streams unless `stream` is false, like Ollama)."""
    model = _require_model(body)
    prompt, words = _chat_prompt(body)
    options = body.get("options") or {}
    return _generation(
        model=model,
        prompt=prompt,
        prompt_words=words,
        max_tokens=_optional_int(options, "num_predict") if isinstance(options, dict) else None,
        top_logprobs=_ollama_top_logprobs(body),
        stream=body.get("stream", True) is not False,
    )


def parse_ollama_generate(body: JSONObject) -> Generation:
    """Interpret a native `/api/generate` request: the reply answers `prompt`."""
    model = _require_model(body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    options = body.get("options") or {}
    return _generation(
        model=model,
        prompt=prompt,
        prompt_words=_word_count(prompt),
        max_tokens=_optional_int(options, "num_predict") if isinstance(options, dict) else None,
        top_logprobs=_ollama_top_logprobs(body),
        stream=body.get("stream", True) is not False,
    )


def parse_openai_chat(body: JSONObject) -> Generation:
    """Interpret a `/v1/chat/completions` request."""
    model = _require_model(body)
    prompt, words = _chat_prompt(body)
    max_tokens = _optional_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens")
    stream_options = body.get("stream_options") or {}
    return _generation(
        model=model,
        prompt=prompt,
        prompt_words=words,
        max_tokens=max_tokens,
        top_logprobs=(_optional_int(body, "top_logprobs") or 0) if body.get("logprobs") else None,
        stream=body.get("stream") is True,
        include_usage=isinstance(stream_options, dict)
        and stream_options.get("include_usage") is True,
    )


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """Texts to embed and the output form asked."""

    model: str
    inputs: list[str]
    dimensions: int | None
    base64: bool  # OpenAI encoding_format="base64"

    @property
    def prompt_tokens(self) -> int:
        """Whitespace word count over all inputs."""
        return sum(_word_count(text) for text in self.inputs)


def _embed_inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):  # one pre-tokenised input
            return [" ".join(map(str, value))]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, list) for v in value):  # several pre-tokenised inputs
            return [" ".join(map(str, v)) for v in value]
    raise BadRequest("input must be a string or a list of strings")


def parse_embed(body: JSONObject, *, openai: bool) -> EmbedRequest:
    """Interpret `/api/embed` (openai=False) or `/v1/embeddings` (openai=True)."""
    model = _require_model(body)
    dimensions = _optional_int(body, "dimensions")
    if dimensions is not None and dimensions < 1:
        raise BadRequest("dimensions must be positive")
    return EmbedRequest(
        model=model,
        inputs=_embed_inputs(body.get("input")),
        dimensions=dimensions,
        base64=openai and body.get("encoding_format") == "base64",
    )


# --- deterministic content ---------------------------------------------------------------------


def _candidates(token: str, k: int) -> list[tuple[str, float]]:
    """The chosen token and k-1 alternatives with deterministic, decreasing log probabilities.

    The chosen token gets p in [0.5, 0.95); alternative j gets (1 - p) / 2**j, so every
    probability is in (0, 1], the chosen one is the largest and they sum to less than 1.
    """
    p = 0.5 + 0.45 * (zlib.crc32(token.encode()) / 2**32)
    out = [(token, math.log(p))]
    rest = 1.0 - p
    out.extend((f"{token}~{j}", math.log(rest / 2**j)) for j in range(1, k))
    return out


def openai_logprob(token: str, k: int) -> JSONObject:
    """One `choices[].logprobs.content` entry."""
    cands = _candidates(token, max(k, 1))
    return {
        "token": token,
        "logprob": cands[0][1],
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in cands[:k]
        ],
    }


def ollama_logprob(token: str, k: int) -> JSONObject:
    """One entry of Ollama's top-level `logprobs` list (`top_logprobs` left out when k is 0)."""
    cands = _candidates(token, max(k, 1))
    entry: JSONObject = {"token": token, "logprob": cands[0][1]}
    if k:
        entry["top_logprobs"] = [{"token": t, "logprob": lp} for t, lp in cands[:k]]
    return entry


def embedding(text: str, dim: int) -> list[float]:
    """A unit vector seeded by the text's hash, rounded to float32 so base64 and floats agree."""
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    rng = random.Random(seed)
    vec = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    packed = struct.pack(f"<{dim}f", *(x / norm for x in vec))
    return list(struct.unpack(f"<{dim}f", packed))


def _base64_floats(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


# --- Ollama payloads --------------------------------------------------------------------------


def _created_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


@dataclass(frozen=True, slots=True)
class Timing:
    """Durations of one served request, in seconds."""

    total: float
    load: float  # time spent waiting for a slot, as Ollama counts its scheduler wait
    prompt_eval: float
    eval: float


def _ollama_done_fields(gen: Generation, count: int, timing: Timing) -> JSONObject:
    return {
        "done": True,
        "done_reason": gen.finish_reason,
        "total_duration": _ns(timing.total),
        "load_duration": _ns(timing.load),
        "prompt_eval_count": gen.prompt_tokens,
        "prompt_eval_duration": _ns(timing.prompt_eval),
        "eval_count": count,
        "eval_duration": _ns(timing.eval),
    }


def ollama_chunk(gen: Generation, tokens: list[str], *, chat: bool) -> JSONObject:
    """A non-final (`done: false`) NDJSON line carrying these tokens."""
    text = "".join(tokens)
    out: JSONObject = {"model": gen.model, "created_at": _created_at()}
    if chat:
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    out["done"] = False
    if gen.top_logprobs is not None:
        out["logprobs"] = [ollama_logprob(t, gen.top_logprobs) for t in tokens]
    return out


def ollama_final(gen: Generation, timing: Timing, *, chat: bool, streamed: bool) -> JSONObject:
    """The `done: true` reply: the whole answer, or an empty closing line after a stream."""
    out = ollama_chunk(gen, [] if streamed else gen.tokens, chat=chat)
    if streamed:
        out.pop("logprobs", None)
    out.update(_ollama_done_fields(gen, len(gen.tokens), timing))
    return out


def ollama_embed(req: EmbedRequest, vectors: list[list[float]], timing: Timing) -> JSONObject:
    """The `/api/embed` answer."""
    return {
        "model": req.model,
        "embeddings": vectors,
        "total_duration": _ns(timing.total),
        "load_duration": _ns(timing.load),
        "prompt_eval_count": req.prompt_tokens,
    }


def _ollama_model(name: str) -> JSONObject:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": 1_000_000,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "sim",
            "families": ["sim"],
            "parameter_size": "1M",
            "quantization_level": "F16",
        },
    }


def ollama_tags(models: tuple[str, ...]) -> JSONObject:
    """The `/api/tags` answer."""
    return {"models": [_ollama_model(name) for name in models]}


def ollama_ps(models: tuple[str, ...]) -> JSONObject:
    """The `/api/ps` answer: every model shown as loaded."""
    return {
        "models": [
            {
                **_ollama_model(name),
                "expires_at": "2099-01-01T00:00:00Z",
                "size_vram": 1_000_000,
                "context_length": 4096,
            }
            for name in models
        ]
    }


# --- OpenAI payloads --------------------------------------------------------------------------


def _usage(gen: Generation) -> JSONObject:
    done = len(gen.tokens)
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": done,
        "total_tokens": gen.prompt_tokens + done,
    }


def openai_completion(gen: Generation, request_id: str) -> JSONObject:
    """A `chat.completion` object."""
    logprobs = None
    if gen.top_logprobs is not None:
        logprobs = {
            "content": [openai_logprob(t, gen.top_logprobs) for t in gen.tokens],
            "refusal": None,
        }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": gen.model,
        "system_fingerprint": "fp_simulated",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": gen.finish_reason,
            }
        ],
        "usage": _usage(gen),
    }


def openai_chunk(
    gen: Generation,
    request_id: str,
    *,
    delta: JSONObject | None = None,
    token: str | None = None,
    finish: bool = False,
    usage: bool = False,
) -> JSONObject:
    """A `chat.completion.chunk`: a role/content delta, the finishing chunk or the usage chunk."""
    out: JSONObject = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": gen.model,
        "system_fingerprint": "fp_simulated",
        "choices": [],
    }
    if not usage:
        choice: JSONObject = {
            "index": 0,
            "delta": delta
            if delta is not None
            else {"content": token}
            if token is not None
            else {},
            "logprobs": None,
            "finish_reason": gen.finish_reason if finish else None,
        }
        if token is not None and gen.top_logprobs is not None:
            choice["logprobs"] = {
                "content": [openai_logprob(token, gen.top_logprobs)],
                "refusal": None,
            }
        out["choices"].append(choice)
    if gen.include_usage:
        out["usage"] = _usage(gen) if usage else None
    return out


def openai_embeddings(req: EmbedRequest, vectors: list[list[float]]) -> JSONObject:
    """A `/v1/embeddings` list, with base64 little-endian float32 vectors when asked."""
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _base64_floats(vec) if req.base64 else vec,
            }
            for i, vec in enumerate(vectors)
        ],
        "model": req.model,
        "usage": {"prompt_tokens": req.prompt_tokens, "total_tokens": req.prompt_tokens},
    }


def openai_model(name: str) -> JSONObject:
    """One `model` object."""
    return {"id": name, "object": "model", "created": 1_735_689_600, "owned_by": "library"}


def openai_models(models: tuple[str, ...]) -> JSONObject:
    """The `/v1/models` list."""
    return {"object": "list", "data": [openai_model(name) for name in models]}


def listing(path: str, models: tuple[str, ...]) -> JSONObject:
    """The answer to a GET of `/api/tags`, `/api/ps`, `/api/version`, `/v1/models[/ID]`."""
    if path == "/api/tags":
        return ollama_tags(models)
    if path == "/api/ps":
        return ollama_ps(models)
    if path == "/api/version":
        return {"version": OLLAMA_VERSION}
    if path == "/v1/models":
        return openai_models(models)
    return openai_model(path.removeprefix("/v1/models/"))


# --- capacity pages of llama.cpp and vLLM --------------------------------------------------------


def llamacpp_props(total_slots: int, model: str) -> JSONObject:
    """llama.cpp's `GET /props` (the fields a client reads, and a few others)."""
    return {
        "default_generation_settings": {"n_ctx": 4096, "params": {"n_predict": -1}},
        "total_slots": total_slots,
        "model_alias": model,
        "model_path": f"/models/{model}.gguf",
        "endpoint_slots": True,
        "endpoint_props": False,
        "endpoint_metrics": False,
        "build_info": "b1-simulated",
    }


def vllm_metrics(running: int, waiting: int, model: str) -> str:
    """vLLM's Prometheus `GET /metrics`: the scheduler gauges, in the exposition format."""
    labels = f'{{engine="0",model_name="{model}"}}'
    return (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{labels} {float(running)}\n"
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{labels} {float(waiting)}\n"
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{labels} 0.0\n"
    )


# --- errors and headers -----------------------------------------------------------------------


def ollama_error(message: str) -> JSONObject:
    """Ollama's error body."""
    return {"error": message}


def openai_error(message: str, type_: str, code: str | None = None) -> JSONObject:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def limit_headers(limit: int, remaining: int, reset: float) -> list[tuple[str, str]]:
    """OpenAI's x-ratelimit-*-requests headers."""
    return [
        ("x-ratelimit-limit-requests", str(limit)),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-reset-requests", go_duration(reset)),
    ]


def ietf_limit_headers(
    limit: int, remaining: int, reset: float, window: float
) -> list[tuple[str, str]]:
    """The IETF draft's `RateLimit-Policy` and `RateLimit` for one request quota."""
    return [
        ("ratelimit-policy", f'"default";q={limit};w={max(1, math.ceil(window))}'),
        ("ratelimit", f'"default";r={remaining};t={max(0, math.ceil(reset))}'),
    ]


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, like OpenAI's x-ratelimit-reset-* headers: 250ms, 1.5s, 6m0s."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
