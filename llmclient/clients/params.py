"""What a provider is asked: sampling parameters, messages, and the validated `ChatRequest`.

Everything here is checked before any request is sent. Provider-specific extras go in
`provider_options` (OpenAI: merged into the request body; Ollama: merged into `options`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmclient.clients import _structured
from llmclient.errors import ConfigurationError
from llmclient.types import Message, MessageInput, Tool

__all__ = [
    "CallOptions",
    "ChatRequest",
    "SamplingOptions",
    "SamplingParams",
    "check_combination",
    "conversation",
    "messages_from",
    "validate_params",
]

_DEFAULT_COMPLETION_ESTIMATE = 256  # tokens charged to tpm when max_tokens is not given


class SamplingParams(BaseModel):
    """Per-call generation parameters; unset ones are left to the server.

    `repetition_penalty` (Ollama's `repeat_penalty`; vLLM's and llama.cpp's own) and
    `json_mode` (an answer that is one JSON object) map to what each provider supports.
    `tools` (`Tool`s or OpenAI's function dicts) and `tool_choice` (`"auto"`, `"none"`,
    `"required"` or a tool's name) offer functions to call; `response_format` (a JSON schema
    or a pydantic model class) asks for an answer of that shape, validated into
    `Completion.parsed`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = Field(None, gt=0)
    json_mode: bool = False
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: Sequence[Tool | Mapping[str, Any]] | None = None
    tool_choice: str | None = None
    response_format: dict[str, Any] | type[BaseModel] | None = None
    provider_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tools", mode="before")
    @classmethod
    def _coerce_tools(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            raise ValueError("must be a list of Tool or function dicts")
        try:
            tools = tuple(Tool.coerce(item) for item in value)
        except (TypeError, ValueError) as error:
            raise ValueError(str(error)) from None
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"two tools have the same name: {names}")
        return tools

    @field_validator("response_format", mode="before")
    @classmethod
    def _check_response_format(cls, value: object) -> object:
        return _structured.check_format(value)

    @model_validator(mode="after")
    def _check_together(self) -> SamplingParams:
        check_combination(self, partial=True)
        return self

    def merged(self, override: SamplingParams) -> SamplingParams:
        """These defaults with every parameter `override` sets replacing them."""
        merged = self.model_copy(
            update={k: getattr(override, k) for k in override.model_fields_set}
        )
        check_combination(merged)
        return merged

    @property
    def tool_specs(self) -> tuple[Tool, ...]:
        """`tools` as `Tool`s (validation made them so); empty when none."""
        return tuple(Tool.coerce(tool) for tool in self.tools or ())


_CHOICES = ("auto", "none", "required")


def check_combination(params: SamplingParams, *, partial: bool = False) -> None:
    """Refuse parameters that contradict each other (a call's merged with the client's).

    `partial`: the parameters of one call alone, whose tools may be the client's.
    """
    choice = params.tool_choice
    if choice is not None and not (partial and params.tools is None):
        if not isinstance(choice, str) or not choice:
            raise ConfigurationError(
                f"invalid parameter: tool_choice={choice!r}: must be one of "
                f"{', '.join(_CHOICES)} or a tool's name"
            )
        names = [tool.name for tool in params.tool_specs]
        if choice not in _CHOICES and choice not in names:
            raise ConfigurationError(
                f"invalid parameter: tool_choice={choice!r}: not one of {', '.join(_CHOICES)} "
                f"nor the name of a tool given (tools: {names or 'none'})"
            )
    if params.json_mode and params.response_format is not None:
        raise ConfigurationError(
            "invalid parameter: json_mode=True and response_format=... both ask for the "
            "answer's shape; pass one"
        )


class SamplingOptions(TypedDict, total=False):
    """The sampling parameters as keywords: a constructor's defaults, or one call's.

    The same names and types as `SamplingParams` (a test keeps the two in step); None
    leaves a parameter to the server (in a call, even one the client has a default for).
    """

    temperature: float | None
    top_p: float | None
    top_k: int | None
    max_tokens: int | None
    seed: int | None
    stop: str | list[str] | None
    presence_penalty: float | None
    frequency_penalty: float | None
    repetition_penalty: float | None
    json_mode: bool
    logprobs: bool
    top_logprobs: int | None
    tools: Sequence[Tool | Mapping[str, Any]] | None
    tool_choice: str | None
    response_format: dict[str, Any] | type[BaseModel] | None
    provider_options: dict[str, Any]


class CallOptions(SamplingOptions, total=False):
    """The keywords of one call (`generate`, `stream`, ...): sampling parameters and `model`.

    `model` (None: the client's) picks the chat model for this call only.
    """

    model: str | None


def validate_params(params: dict[str, Any]) -> SamplingParams:
    """Check sampling parameters; raise `ConfigurationError` naming each bad one."""
    try:
        return SamplingParams(**params)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, ConfigurationError):
                raise cause from None
            name = str(item["loc"][0]) if item["loc"] else "?"
            if item["type"] == "extra_forbidden":
                known = ", ".join(SamplingParams.model_fields)
                problems.append(f"unknown parameter {name!r} (known: {known})")
            else:
                problems.append(f"{name}={item.get('input')!r}: {item['msg']}")
        raise ConfigurationError("invalid parameter: " + "; ".join(problems)) from None


@dataclass(slots=True)
class ChatRequest:
    """What a provider needs for one chat call, already validated.

    `messages` are in the neutral form of `Message.to_dict` (OpenAI's chat messages), which
    each provider turns into its own.
    """

    model: str
    messages: list[dict[str, Any]]
    params: SamplingParams

    def estimated_tokens(self) -> int:
        """Prompt characters / 4 plus the completion budget: the tpm charge before the call."""
        return self.prompt_estimate() + self.completion_estimate()

    def prompt_estimate(self) -> int:
        """The prompt's tokens before the call: its text's characters / 4, plus one."""
        chars = 0
        for m in self.messages:
            content = m["content"]
            chars += len(content) if isinstance(content, str) else _parts_chars(content)
        return chars // 4 + 1

    def completion_estimate(self) -> int:
        """The answer's tokens before the call: `max_tokens`, or 256 when it is not given."""
        return self.params.max_tokens or _DEFAULT_COMPLETION_ESTIMATE


_IMAGE_CHARS = 4 * 768  # an image counted as 768 prompt tokens (a few tiles), before the call


def _parts_chars(parts: list[dict[str, Any]]) -> int:
    return sum(len(p["text"]) if p.get("type") == "text" else _IMAGE_CHARS for p in parts)


def messages_from(prompt_or_messages: str | Sequence[MessageInput]) -> list[Message]:
    """A prompt as one user message, or checked messages.

    >>> messages_from("hi")
    [Message(role='user', content='hi')]
    """
    if isinstance(prompt_or_messages, str):
        return [Message("user", prompt_or_messages)]
    if (
        type(prompt_or_messages) is list
        and prompt_or_messages
        and all(type(m) is Message for m in prompt_or_messages)
    ):
        return prompt_or_messages.copy()  # Messages are checked when made (as by `conversation`)
    if not isinstance(prompt_or_messages, Sequence):
        raise TypeError(
            "prompt_or_messages must be a string or a sequence of messages, "
            f"got {type(prompt_or_messages).__name__}"
        )
    messages = [Message.coerce(m) for m in prompt_or_messages]  # type: ignore[arg-type]
    if not messages:
        raise ValueError("messages must not be empty")
    return messages


def conversation(
    text: str, history: Sequence[str] | Sequence[MessageInput] | None
) -> list[Message]:
    """`history` then `text` as a user turn; plain strings in `history` alternate user, assistant.

    >>> [m.role for m in conversation("again", ["hi", "hello"])]
    ['user', 'assistant', 'user']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
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
