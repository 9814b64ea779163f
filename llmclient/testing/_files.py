"""OpenAI's Files API for the simulated server: `/v1/files`.

Multipart upload (`purpose`, `file`), retrieve, list, content and delete, with OpenAI's
`FileObject` shape; the batches' output and error files are kept here too (see `_batches`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import _protocols as proto
from ._http import Request
from ._reply import Reply

MAX_FILE_BYTES = 200 * 1000 * 1000
"""Bytes one uploaded batch input file may hold (200 MB)."""
_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
_FILE_PATH = re.compile(r"/v1/files/([^/]+)(/content)?")


@dataclass(slots=True)
class StoredFile:
    """One uploaded or produced file and its `FileObject`."""

    info: dict[str, Any]
    content: bytes


class FileStore:
    """The files by id; new ids are numbered from `ids`, shared with the batches."""

    def __init__(self, ids: Iterator[int]) -> None:
        self.files: dict[str, StoredFile] = {}
        self._ids = ids

    async def answer(self, request: Request, reply: Reply) -> bool:
        """Answer a request to `/v1/files...`; False when it is none (the caller answers 404)."""
        method, path = request.method, request.path
        if path == "/v1/files":
            if method == "POST":
                await reply.json(self.upload(request))
                return True
            if method == "GET":
                await reply.json(self.listing())
                return True
        elif (found := _FILE_PATH.fullmatch(path)) is not None:
            stored = self.files.get(found[1])
            if stored is None:
                await reply.error(
                    404, f"No such File object: {found[1]}", type_="invalid_request_error"
                )
                return True
            if found[2] and method == "GET":
                await reply.page("application/octet-stream", stored.content)
                return True
            if not found[2] and method == "GET":
                await reply.json(stored.info)
                return True
            if not found[2] and method == "DELETE":
                del self.files[found[1]]
                await reply.json({"id": found[1], "object": "file", "deleted": True})
                return True
        return False

    def upload(self, request: Request) -> dict[str, Any]:
        """Store a multipart upload (`purpose`, `file`); its `FileObject`."""
        fields = _multipart(request)
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if purpose not in _PURPOSES:
            raise proto.BadRequest(f"'{purpose}' is not one of {list(_PURPOSES)} - 'purpose'")
        if "file" not in fields:
            raise proto.BadRequest("'file' is a required property")
        filename, content = fields["file"]
        if purpose == "batch":
            if not (filename or "").endswith(".jsonl"):
                raise proto.BadRequest("Invalid file format for Batch API. Must be .jsonl")
            if len(content) > MAX_FILE_BYTES:
                raise proto.BadRequest(
                    f"File is too large: {len(content)} bytes; the Batch API takes at most "
                    f"{MAX_FILE_BYTES} bytes per file"
                )
        return self.store(filename or "upload", purpose, content).info

    def store(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        """Keep `content` under a new file id."""
        file_id = f"file-sim{next(self._ids):012d}"
        info = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        stored = StoredFile(info, content)
        self.files[file_id] = stored
        return stored

    def listing(self) -> dict[str, Any]:
        """Every file, oldest first, as OpenAI lists them."""
        data = [stored.info for stored in self.files.values()]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }


def _multipart(request: Request) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, content)."""
    kind = request.header("content-type") or ""
    found = re.search(r'boundary="?([^";]+)"?', kind)
    if not kind.startswith("multipart/form-data") or found is None:
        raise proto.BadRequest("expected a multipart/form-data body")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in request.body.split(b"--" + found[1].encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        disposition = next(
            (
                line.decode("utf-8", "replace")
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name is not None:
            fields[name[1]] = (filename[1] if filename else None, content.removesuffix(b"\r\n"))
    return fields
