"""Output of `llmclient run`: an append-only JSONL file that survives `kill -9` at any moment.

Each record is one `os.write` of a whole line on an O_APPEND descriptor, so a crash leaves at
most one torn last line; `load()` cuts it off. Rewrites go through a temporary file and
`os.replace`, so the file is always either the old or the new version.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from llmclient._durable import replace_atomically
from llmclient.cli._common import CommandError, UsageError
from llmclient.cli._jobfile import id_key

_SYNC_INTERVAL = 1.0  # seconds between two fsyncs while writing


@dataclass(slots=True)
class Existing:
    """The records already in an output file, by id key, and the torn bytes cut off."""

    answered: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    repaired_bytes: int = 0
    prompt_tokens: int = 0  # the usage the answer records report, summed
    completion_tokens: int = 0


def load(path: Path) -> Existing:
    """Read the records in `path`, creating it if missing; cut off a torn last line left by an
    interrupted run. A path that is not a regular file (/dev/null, a pipe) holds no records:
    it is not read, since a device such as /dev/zero never ends.

    An output that cannot be written (its directory is missing, it is a directory, no
    permission) is a `UsageError` naming the path and what to do, raised before anything is sent.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _unwritable(path, error) from None
    found = Existing()
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/null, a pipe: nothing to resume from
        os.close(fd)
        return found
    good_end = 0
    with os.fdopen(fd, "r+b") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.endswith(b"\n"):
                break  # a record is written whole or it is the torn last line
            key, answered, usage = _parse_record(raw, path, number)
            (found.answered if answered else found.failed).add(key)
            found.prompt_tokens += usage[0]
            found.completion_tokens += usage[1]
            good_end += len(raw)
        found.repaired_bytes = os.fstat(fd).st_size - good_end
        if found.repaired_bytes:
            lines.truncate(good_end)
    found.failed -= found.answered
    return found


def _unwritable(path: Path, error: OSError) -> UsageError:
    """The one-line usage error for an output path that cannot be opened for writing."""
    match error.errno:
        case errno.ENOENT:
            check = f"create the directory {path.parent} first, or choose another output path"
        case errno.EISDIR:
            check = f"give the path of a file, e.g. {path / 'output.jsonl'}"
        case errno.ENOTDIR:
            check = "a part of the path is a file, not a directory; choose another output path"
        case errno.EACCES | errno.EPERM | errno.EROFS:
            check = "make it writable, or choose another output path"
        case _:
            check = "choose another output path"
    return UsageError(f"cannot write {path}: {error.strerror or error} — {check}")


def _parse_record(raw: bytes, path: Path, number: int) -> tuple[str, bool, tuple[int, int]]:
    """A record's id key, whether it holds an answer (else an error) and the prompt and
    completion tokens its usage reports (0 when it has none)."""
    try:
        record = json.loads(raw)
        item_id = record["id"]
        answered = "answer" in record
        if isinstance(item_id, bool) or not isinstance(item_id, str | int):
            raise TypeError("id")
        if answered == ("error" in record):
            raise KeyError("answer or error")
    except (ValueError, TypeError, KeyError):
        raise CommandError(
            f"{path}:{number}",
            "this line is not a record written by `llmclient run`",
            "write to a new output file, or fix or delete that line",
        ) from None
    return id_key(item_id), answered, _usage_of(record)


def _usage_of(record: dict[str, Any]) -> tuple[int, int]:
    usage = record.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return tuple(c if isinstance(c, int) and not isinstance(c, bool) else 0 for c in counts)  # type: ignore[return-value]


def drop_failed(path: Path) -> None:
    """Rewrite `path` without its error records, atomically (temporary file + os.replace).

    On failure (no room, a directory that cannot hold a new file) `path` is left as it was and
    a `CommandError` says so.
    """

    def answers_only(target: BinaryIO) -> None:
        with path.open("rb") as source:
            for raw in source:
                if "answer" in json.loads(raw):
                    target.write(raw)

    try:
        replace_atomically(path, path.with_name(f".{path.name}.rewrite"), answers_only)
    except OSError as error:
        raise CommandError(
            str(path),
            f"could not rewrite it without its error records ({error.strerror or error}); "
            "it is unchanged",
            f"make room in or write access to {path.parent}, or rerun without --retry-failed",
        ) from None


def encode(record: dict[str, Any]) -> bytes:
    """`record` as one JSON line; TypeError or ValueError if JSON cannot hold a value in it."""
    return (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode(
        "utf-8", "backslashreplace"
    )


class RecordWriter:
    """Appends one record per `write`, as a single `os.write` of the whole line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise _unwritable(path, error) from None
        self._synced_at = time.monotonic()
        self.written = 0

    def write(self, line: bytes) -> None:
        """Append one line made by `encode`; fsync at most every second."""
        try:
            if os.write(self._fd, line) != len(line):
                raise OSError("short write")
        except OSError as error:
            raise CommandError(
                str(self.path),
                f"could not write a whole record ({error})",
                "free disk space, then rerun the same command to continue",
            ) from None
        self.written += 1
        if time.monotonic() - self._synced_at >= _SYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        """Flush the records written so far to disk (a no-op for /dev/null and the like)."""
        try:
            os.fsync(self._fd)
        except OSError as error:
            if error.errno != errno.EINVAL:  # EINVAL: a special file, nothing to flush
                raise CommandError(
                    str(self.path),
                    f"could not flush the records to disk ({error.strerror or error})",
                    "check the disk, then rerun the same command to continue",
                ) from None
        self._synced_at = time.monotonic()

    def close(self) -> None:
        """Sync and close."""
        try:
            self.sync()
        finally:
            os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(CommandError):  # the error on its way out says more
            self.close()
