"""The SQLite file a test-mode acquirer or scheme simulator keeps its own records in, shared by
every gateway process: WAL, one connection per thread, write transactions begun IMMEDIATE."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


class SqliteStore:
    """A store whose tables `SCHEMA` creates (if they are missing) when it opens."""

    SCHEMA = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(self.SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # As the gateway's own SQLite: a commit survives the process (kill -9 included),
            # and the write-ahead log is synced at checkpoints, not at every transaction.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's connection, for a read of one statement (a snapshot of its own)."""
        return self._connection()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """IMMEDIATE: two processes answering for the same record never both read it as open."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT leaves it open: never for the next caller
                conn.execute("ROLLBACK")
            raise
