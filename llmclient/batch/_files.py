"""A batch job's files: requests as the lines of input files, split to OpenAI's limits, and
the rows of the output and error files it downloads."""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from llmclient.batch._polling import call
from llmclient.batch._types import ENDPOINT, BatchRequest
from llmclient.clients.openai import OpenAIClient
from llmclient.clients.params import messages_from
from llmclient.errors import ConfigurationError

__all__ = ["parsed_rows", "read_rows", "request_line", "split_files"]

logger = logging.getLogger("llmclient")


def request_line(client: OpenAIClient, key: str, request: BatchRequest) -> bytes:
    """The request as one line of an input file: its body is what `generate` would send."""
    chat = client._request(messages_from(request.prompt), dict(request.params))
    body = client._arguments(chat)
    body.update(body.pop("extra_body", None) or {})
    line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False) + "\n").encode()


def split_files(
    client: OpenAIClient,
    requests: Mapping[str, BatchRequest],
    keys: list[str],
    max_requests: int,
    max_bytes: int,
) -> Iterable[tuple[list[str], bytes]]:
    """The keys' lines in files of at most `max_requests` lines and `max_bytes` bytes."""
    ids: list[str] = []
    lines: list[bytes] = []
    size = 0
    for key in keys:
        line = request_line(client, key, requests[key])
        if len(line) > max_bytes:
            raise ConfigurationError(
                f"requests: id {key} takes {len(line)} bytes, more than max_bytes="
                f"{max_bytes} of one batch file"
            )
        if ids and (len(ids) == max_requests or size + len(line) > max_bytes):
            yield ids, b"".join(lines)
            ids, lines, size = [], [], 0
        ids.append(key)
        lines.append(line)
        size += len(line)
    if ids:
        yield ids, b"".join(lines)


async def read_rows(client: OpenAIClient, file_id: str | None) -> Iterator[dict[str, Any]]:
    """The lines of an output or error file, parsed one by one as they are read."""
    if file_id is None:
        return iter(())
    content = await call(client, functools.partial(client._sdk.files.content, file_id))
    return parsed_rows(file_id, content.content)


def parsed_rows(file_id: str, content: bytes) -> Iterator[dict[str, Any]]:
    """The rows of a downloaded file that name a `custom_id`."""
    for raw in io.BytesIO(content):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            logger.warning("batch job: %s holds a line that is not JSON; skipped", file_id)
            continue
        if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
            yield row
