"""A batch input file's rows, checked as OpenAI checks them before a batch runs."""

from __future__ import annotations

import json
from typing import Any

MAX_REQUESTS = 50_000
"""Requests one batch's input file may hold."""


def validate(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of an input file, and the problems that fail its batch (OpenAI's `errors.data`)."""
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(code: str, message: str, line: int, param: str | None = None) -> None:
        problems.append({"code": code, "message": message, "param": param, "line": line})

    lines = [raw for raw in content.split(b"\n") if raw.strip()]
    if len(lines) > MAX_REQUESTS:
        problem(
            "too_many_requests",
            f"The input file has {len(lines)} requests; at most "
            f"{MAX_REQUESTS} are allowed per batch.",
            1,
        )
        return [], problems
    for number, raw in enumerate(lines, start=1):
        try:
            row = json.loads(raw)
        except ValueError:
            problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not isinstance(row, dict):
            problem("invalid_json_line", "This line is not a JSON object.", number)
            continue
        custom_id = row.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problem(
                "missing_required_parameter",
                "Missing required parameter: 'custom_id'.",
                number,
                "custom_id",
            )
        elif custom_id in seen:
            problem(
                "duplicate_custom_id",
                f"The custom_id for this request is a duplicate of another request: {custom_id}",
                number,
                "custom_id",
            )
        else:
            seen.add(custom_id)
        if row.get("method") != "POST":
            problem("invalid_value", "Only 'POST' requests are supported.", number, "method")
        if row.get("url") != endpoint:
            problem(
                "mismatched_endpoint",
                f"The provided URL {row.get('url')!r} does not match the batch endpoint "
                f"{endpoint!r}.",
                number,
                "url",
            )
        if not isinstance(row.get("body"), dict):
            problem(
                "missing_required_parameter", "Missing required parameter: 'body'.", number, "body"
            )
        rows.append(row)
    return rows, problems
