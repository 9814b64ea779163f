"""The answers a client returns: stamping a `Completion` with its call's figures, the usage
the pipeline records, and `token_from_logprob` for providers."""

from __future__ import annotations

import math
from dataclasses import replace

from llmclient.types import Completion, Token, Usage

__all__ = ["embed_usage", "stamped", "token_from_logprob", "usage"]


def stamped(completion: Completion, attempts: int, latency: float) -> Completion:
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
        tool_calls=c.tool_calls,
        parsed=c.parsed,
    )


def usage(completion: Completion) -> Usage | None:
    return completion.usage


def embed_usage(answer: tuple[list[list[float]], int | None]) -> Usage | None:
    return None if answer[1] is None else Usage(prompt_tokens=answer[1])


def token_from_logprob(text: str, logprob: float, candidates: list[Token] | None = None) -> Token:
    """A `Token` from a provider's log-probability."""
    return Token(text=text, prob=math.exp(logprob), top_candidates=candidates or [])
