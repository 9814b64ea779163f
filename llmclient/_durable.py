"""Writing a file so that a crash leaves either the old file or the new one: a temporary file
beside it, flushed to disk, renamed over it, and the rename itself made durable."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["replace_atomically", "sync_directory"]


def replace_atomically(path: Path, temporary: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write` puts in `temporary`; on an OSError the temporary file
    is removed, `path` is left as it was, and the error is raised."""
    try:
        with temporary.open("wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename durable where the platform lets a directory be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
