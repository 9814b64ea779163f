"""The state of a batch job on disk: each uploaded file, the batch made from it and its ids.

Written whole to a temporary file, flushed, then renamed over the old one (`os.replace`), so
a process killed at any moment leaves the previous or the new state, never a torn one. It is
saved after each upload and after each batch is created, so a rerun finds what it paid for.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmclient._durable import replace_atomically
from llmclient.errors import ConfigurationError

VERSION = 1


@dataclass(slots=True)
class Chunk:
    """One input file: its ids (keys, the JSON text of each id), its batch once created."""

    file_id: str
    ids: list[str]
    round: int = 0  # 0 for the first submission, then one more per resubmission
    batch_id: str | None = None
    status: str | None = None  # the batch's last status seen
    done: bool = False  # its results were all handed out


@dataclass(slots=True)
class JobState:
    """Every chunk of one job, saved to `path` (None: kept in memory only)."""

    path: Path | None
    endpoint: str
    chunks: list[Chunk] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None, endpoint: str) -> JobState:
        """The state saved at `path`, or a new one; a file of another endpoint is refused."""
        if path is None or not path.exists():
            return cls(path, endpoint)
        try:
            data = json.loads(path.read_bytes())
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
            chunks = [Chunk(**chunk) for chunk in data["chunks"]]
            saved = str(data["endpoint"])
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise ConfigurationError(
                f"state={str(path)!r}: not a batch job state file ({error}); move it away to "
                "start a new job"
            ) from None
        if saved != endpoint:
            raise ConfigurationError(
                f"state={str(path)!r} holds batches of {saved}, not of {endpoint}; use the "
                "same base URL, or another state file"
            )
        return cls(path, endpoint, chunks)

    def save(self) -> None:
        """Write the state atomically (no-op without a path)."""
        if self.path is None:
            return
        data: dict[str, Any] = {
            "version": VERSION,
            "endpoint": self.endpoint,
            "chunks": [asdict(chunk) for chunk in self.chunks],
        }
        encoded = json.dumps(data, separators=(",", ":")).encode()
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        replace_atomically(self.path, temporary, lambda out: out.write(encoded))

    def submitted(self) -> set[str]:
        """The ids in a chunk whose results are not all handed out yet."""
        return {key for chunk in self.chunks if not chunk.done for key in chunk.ids}
