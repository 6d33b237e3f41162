"""One ``sgdbench run`` per results folder at a time.

The lock is an ``flock`` on ``<results>/.lock``, which holds the owner's pid and host. The kernel
drops an flock when its process dies, even by ``kill -9``, so a lock left by a dead process is
stale by construction and is simply taken over.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from sgdbench.errors import SgdbenchError

LOCK_FILE = ".lock"


class FolderLocked(SgdbenchError):
    exit_code = 2


class ResultsLock:
    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> ResultsLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderLocked(
                f"{self.path.parent}: in use by {owner} (another sgdbench run "
                "writes here; wait for it or use --out)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
