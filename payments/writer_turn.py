"""SQLite's writers take turns on a lock file before `BEGIN IMMEDIATE`, so that a writer waiting
for another wakes the moment it is done, instead of in SQLite's busy handler, which sleeps 1, 2,
5, 10, 15, 20, 25 ms and more between tries."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from payments.errors import Unavailable

POLL_S = 0.0005  # between tries of a taken lock: a waiter starts within half a millisecond


class WriterTurn:
    """An exclusive lock shared by every process that writes the database at `path` (an
    advisory `flock` on `path` + `.writer`), and by the threads of this process. Readers never
    take it: SQLite's write-ahead log lets them read while a writer writes."""

    def __init__(self, database: Path, timeout_s: float) -> None:
        self.path = database.with_name(database.name + ".writer")
        self.timeout_s = timeout_s
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        """This process's own open file: one inherited through fork would share its lock."""
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout_s
        if not self._threads.acquire(timeout=self.timeout_s):
            raise Unavailable("the database is busy; retry with the same key")
        try:
            fd = self._descriptor()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Unavailable("the database is busy; retry with the same key") from None
                    time.sleep(POLL_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()
