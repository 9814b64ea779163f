"""Chat messages and their parts: text, images, tools and tool calls (`llmclient.types` re-exports
every public name here; import them from there).

Plain frozen dataclasses: they are built once per request, so they stay cheap.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

__all__ = [
    "ContentPart",
    "ImagePart",
    "Message",
    "MessageInput",
    "Role",
    "TextPart",
    "Tool",
    "ToolCall",
    "image",
    "text",
]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
_ROLES = frozenset(("system", "user", "assistant", "tool"))


@dataclass(frozen=True, slots=True)
class TextPart:
    """A text part of a message's content."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"text part: text must be a string, got {type(self.text).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's content part."""
        return {"type": "text", "text": self.text}


_IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image part of a message's content: a URL (`http(s):` or `data:`) or raw bytes.

    Make one with `llmclient.image(...)`.
    """

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    media_type: str | None = None  # of `data`; guessed from its first bytes when None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("image part: give exactly one of url= or data=")
        if self.url is not None and not (
            isinstance(self.url, str) and self.url.startswith(("http://", "https://", "data:"))
        ):
            raise ValueError(
                f"image part: url={_short(self.url)!r} must be an http(s):// or data: URL "
                "(for a file, pass a pathlib.Path)"
            )
        if self.data is not None and not isinstance(self.data, bytes):
            raise TypeError(f"image part: data must be bytes, got {type(self.data).__name__}")

    @property
    def data_url(self) -> str:
        """The image as a URL: `url` itself, or `data` as a base64 `data:` URL."""
        if self.url is not None:
            return self.url
        assert self.data is not None
        kind = self.media_type or next(
            (t for magic, t in _IMAGE_TYPES.items() if self.data.startswith(magic)), "image/png"
        )
        return f"data:{kind};base64,{base64.b64encode(self.data).decode()}"

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's content part (bytes as a base64 `data:` URL)."""
        return {"type": "image_url", "image_url": {"url": self.data_url}}


ContentPart: TypeAlias = TextPart | ImagePart


def text(value: str) -> TextPart:
    """A text part, for a message whose content mixes text and images.

    >>> text("What is in this picture?")
    TextPart(text='What is in this picture?')
    """
    return TextPart(value)


def image(source: str | bytes | Path, *, media_type: str | None = None) -> ImagePart:
    """An image part from a URL (`https://...` or `data:...`), raw bytes or a file path.

    >>> image("https://example.com/cat.png").url
    'https://example.com/cat.png'
    >>> image(b"GIF89a...").data_url[:22]
    'data:image/gif;base64,'
    """
    if isinstance(source, Path):
        return ImagePart(data=source.read_bytes(), media_type=media_type)
    if isinstance(source, bytes | bytearray | memoryview):
        return ImagePart(data=bytes(source), media_type=media_type)
    if isinstance(source, str):
        return ImagePart(url=source)
    raise TypeError(f"image: source must be a URL, bytes or a Path, got {type(source).__name__}")


def _short(value: object, limit: int = 80) -> str:
    shown = str(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters' JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"tool name={self.name!r}: must be a non-empty string")
        if not isinstance(self.parameters, Mapping):
            raise TypeError(
                f"tool {self.name!r}: parameters must be a JSON schema (a dict), "
                f"got {type(self.parameters).__name__}"
            )

    @classmethod
    def coerce(cls, value: Tool | Mapping[str, Any]) -> Tool:
        """A `Tool`, or OpenAI's `{"type": "function", "function": {...}}` form of one."""
        if isinstance(value, Tool):
            return value
        if isinstance(value, Mapping):
            spec = value.get("function", value)
            if isinstance(spec, Mapping) and "name" in spec:
                return cls(
                    name=spec["name"],
                    description=spec.get("description"),
                    parameters=spec.get("parameters") or {"type": "object", "properties": {}},
                )
        raise TypeError(
            "tools: each item must be a Tool or a mapping "
            f'{{"type": "function", "function": {{"name": ...}}}}, got {_short(value)!r}'
        )

    def to_dict(self) -> dict[str, Any]:
        """The `{"type": "function", "function": {...}}` form OpenAI and Ollama both take."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = dict(self.parameters)
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asks for: the tool's `name` and its `arguments` as parsed JSON.

    `id` is the provider's call id (OpenAI gives one; Ollama none): a tool result message
    answers it with `Message.tool_result(call, ...)`.
    """

    name: str
    arguments: Any
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's form (arguments as a JSON string), as kept in an assistant message."""
        call: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }
        if self.id is not None:
            call["id"] = self.id
        return call

    @classmethod
    def coerce(cls, value: ToolCall | Mapping[str, Any]) -> ToolCall:
        """A `ToolCall`, or OpenAI's or Ollama's dict form of one."""
        if isinstance(value, ToolCall):
            return value
        if isinstance(value, Mapping) and isinstance(value.get("function"), Mapping):
            function = value["function"]
            arguments = function.get("arguments", {})
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments) if arguments else {}
                except ValueError:
                    raise ValueError(
                        f"tool_calls: arguments of {function.get('name')!r} are not JSON: "
                        f"{_short(arguments)!r}"
                    ) from None
            return cls(name=str(function.get("name")), arguments=arguments, id=value.get("id"))
        raise TypeError(f"tool_calls: each item must be a ToolCall, got {_short(value)!r}")


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn.

    `content` is a string, or a sequence of parts (`llmclient.text(...)`,
    `llmclient.image(...)`) for a user turn with images. An assistant turn may carry the
    `tool_calls` it made; a `"tool"` turn answers one (`Message.tool_result`), naming its
    `tool_call_id` and the tool's `name`.
    """

    role: Role
    content: str | Sequence[ContentPart]  # parts are kept as a tuple
    tool_calls: Sequence[ToolCall] = ()  # kept as a tuple
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Message role={self.role!r}: must be one of {sorted(_ROLES)}")
        if isinstance(self.content, str):
            if not self.tool_calls and self.tool_call_id is None and self.name is None:
                return
        elif isinstance(self.content, Sequence):
            parts = tuple(_part(p) for p in self.content)
            if type(self.content) is not tuple or any(
                a is not b for a, b in zip(parts, self.content, strict=True)
            ):
                object.__setattr__(self, "content", parts)
        else:
            raise TypeError(
                "Message content must be a string or a sequence of content parts, "
                f"got {type(self.content).__name__}"
            )
        calls = tuple(ToolCall.coerce(c) for c in self.tool_calls)
        if calls and self.role != "assistant":
            raise ValueError(f"Message role={self.role!r}: only assistant turns carry tool_calls")
        object.__setattr__(self, "tool_calls", calls)

    def __repr__(self) -> str:
        shown = [f"role={self.role!r}", f"content={self.content!r}"]
        for name in ("tool_calls", "tool_call_id", "name"):
            value = getattr(self, name)
            if value:
                shown.append(f"{name}={value!r}")
        return f"Message({', '.join(shown)})"

    @classmethod
    def tool_result(cls, call: ToolCall, content: object) -> Message:
        """The `"tool"` turn that answers `call` (content not a string is sent as JSON)."""
        shown = content if isinstance(content, str) else json.dumps(content)
        return cls("tool", shown, tool_call_id=call.id, name=call.name)

    @classmethod
    def coerce(cls, value: Message | Mapping[str, object]) -> Message:
        """Accept a `Message` or a `{"role": ..., "content": ...}` mapping (OpenAI's form:
        content parts, `tool_calls`, `tool_call_id`; `name` or Ollama's `tool_name`)."""
        if isinstance(value, Message):
            return value
        if (
            isinstance(value, Mapping)
            and "role" in value
            and ("content" in value or value.get("tool_calls"))
        ):
            content = value.get("content")
            if len(value) == 2 and isinstance(content, str):
                return cls(role=value["role"], content=content)  # type: ignore[arg-type]
            return cls(
                role=value["role"],  # type: ignore[arg-type]
                content="" if content is None else content,  # type: ignore[arg-type]
                tool_calls=tuple(value.get("tool_calls") or ()),  # type: ignore[arg-type]
                tool_call_id=value.get("tool_call_id"),  # type: ignore[arg-type]
                name=value.get("name") or value.get("tool_name"),  # type: ignore[arg-type]
            )
        raise TypeError(
            f"messages: each item must be a Message or a mapping with 'role' and 'content', "
            f"got {value!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The provider-neutral wire form: OpenAI's chat message (content parts, tool calls;
        a tool turn's `name` too, which the OpenAI client leaves out)."""
        if isinstance(self.content, str):
            out: dict[str, Any] = {"role": self.role, "content": self.content}
        else:
            out = {"role": self.role, "content": [part.to_dict() for part in self.content]}
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


def _part(value: object) -> ContentPart:
    """A content part from a part object or OpenAI's `{"type": "text" | "image_url", ...}`."""
    if isinstance(value, TextPart | ImagePart):
        return value
    if isinstance(value, str):
        return TextPart(value)
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind == "text" and isinstance(value.get("text"), str):
            return TextPart(value["text"])
        url = value.get("image_url")
        if kind == "image_url" and isinstance(url, Mapping) and isinstance(url.get("url"), str):
            return ImagePart(url=url["url"])
    raise TypeError(
        "Message content parts must be llmclient.text(...), llmclient.image(...) or OpenAI's "
        f'{{"type": "text" | "image_url", ...}} dicts, got {_short(value)!r}'
    )


MessageInput: TypeAlias = Message | Mapping[str, object]
