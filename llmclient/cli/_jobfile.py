"""Input of `llmclient run`: JSONL lines with an id and a prompt or messages, read lazily.

`scan()` makes one pass keeping only ids (duplicates, malformed lines); `items()` re-reads the
file and yields the requests still to do, one line at a time, each id at most once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmclient import ConfigurationError, Message

_REQUEST_KEYS = ("id", "prompt", "messages", "model")


class MalformedLine(ValueError):
    """A line that cannot become a request; the message says why."""


@dataclass(frozen=True, slots=True)
class Item:
    """One request of the job."""

    id: str | int
    line: int
    prompt: str | list[dict[str, str]]
    params: dict[str, Any]

    @property
    def key(self) -> str:
        """The id as canonical JSON: `1` and `"1"` are different ids."""
        return id_key(self.id)


@dataclass(slots=True)
class Scan:
    """What one pass over the input found: the line of each id, and the problems."""

    lines: dict[str, int] = field(default_factory=dict)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[tuple[str, int, int]] = field(default_factory=list)  # key, first, again


def id_key(value: str | int) -> str:
    """The key an id is compared by, in the input and in the output."""
    return json.dumps(value)


def parse_line(text: str, line: int) -> Item:
    """One input line as an `Item`; raise `MalformedLine` saying what is wrong."""
    _check_utf8(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedLine(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise MalformedLine(f"expected a JSON object, got {type(data).__name__}")
    item_id = data.get("id", line)
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise MalformedLine(f"id must be a string or an integer, got {item_id!r}")
    return Item(item_id, line, _prompt(data), _params(data))


def _check_utf8(text: str) -> None:
    """Refuse a line holding bytes that are not UTF-8 (read as surrogate escapes), rather than
    sending replacement characters in their place."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        byte = ord(text[error.start]) - 0xDC00
        raise MalformedLine(
            f"not valid UTF-8 (byte 0x{byte:02x} at column {error.start + 1})"
        ) from None


def _prompt(data: Mapping[str, Any]) -> str | list[dict[str, str]]:
    prompt, messages = data.get("prompt"), data.get("messages")
    if (prompt is None) == (messages is None):
        raise MalformedLine('needs exactly one of "prompt" (a string) or "messages" (a list)')
    if prompt is not None:
        if not isinstance(prompt, str):
            raise MalformedLine(f"prompt must be a string, got {type(prompt).__name__}")
        return prompt
    if not isinstance(messages, list) or not messages:
        raise MalformedLine("messages must be a non-empty list of {role, content} objects")
    try:
        return [Message.coerce(m).to_dict() for m in messages]
    except ValueError as error:
        raise MalformedLine(str(error)) from None


def _params(data: Mapping[str, Any]) -> dict[str, Any]:
    from llmclient import validate_params  # pydantic, only once there is a line to check

    params = {k: v for k, v in data.items() if k not in _REQUEST_KEYS}
    try:
        validate_params(params)
    except ConfigurationError as error:
        raise MalformedLine(error.message) from None
    model = data.get("model")
    if model is not None:
        if not isinstance(model, str) or not model:
            raise MalformedLine("model must be a non-empty string")
        params["model"] = model
    return params


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; bytes that are not UTF-8 kept as surrogate
    escapes, for `parse_line` to refuse."""
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number, text in enumerate(lines, start=1):
            if text.strip():
                yield number, text


def scan(path: Path) -> Scan:
    """One pass over the input keeping only ids: their lines, duplicates and malformed lines."""
    found = Scan()
    for number, text in _numbered_lines(path):
        try:
            key = parse_line(text, number).key
        except MalformedLine as problem:
            found.malformed.append((number, str(problem)))
            continue
        first = found.lines.setdefault(key, number)
        if first != number:
            found.duplicates.append((key, first, number))
    return found


def items(path: Path, todo: set[str]) -> Iterator[Item]:
    """The well-formed requests whose ids are in `todo`, read one line at a time, each id once:
    it leaves `todo` as it is yielded."""
    for number, text in _numbered_lines(path):
        try:
            item = parse_line(text, number)
        except MalformedLine:
            continue
        if item.key in todo:
            todo.discard(item.key)
            yield item
