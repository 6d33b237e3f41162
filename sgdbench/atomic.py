"""Atomic file writes: a temporary dot-name in the same folder, fsync, rename, fsync the folder.

A reader (or a rerun after ``kill -9``) sees either the old file or the new one, never half of
one; leftover temporaries are named ``.<name>.<pid>.tmp`` and removed on the next run when
``<name>`` is a file sgdbench writes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` via ``write(tmp)``; the file appears whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9]+\.tmp")


def temporary_target(path: Path) -> str | None:
    """The name of the file a temporary of ``atomic_write`` was to become (None if ``path`` is
    not one): a leftover may be removed only when that name is one sgdbench writes."""
    match = _TEMPORARY.fullmatch(path.name)
    return match["target"] if match else None
