"""One SQLite file owned by one store: connection, pragmas, schema version, transactions.

The stores (twin store, alert store, webhook outbox) each keep their own file so that their
retention and access can differ; this base gives them the same, careful plumbing: WAL, a busy
timeout instead of "database is locked" under concurrent readers, one lock per connection
(the connection is shared across threads), and ``BEGIN IMMEDIATE`` transactions that take the
write lock up front so two writers cannot deadlock on an upgrade.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from streams.errors import StoreError


class SqliteFile:
    def __init__(
        self,
        path: str | Path,
        *,
        schema: str,
        version: int,
        label: str,
        meta_table: str = "meta",
        version_key: str = "schema",
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(path), timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL is durable at checkpoints; FULL for stores that must not lose a row
            # even on power loss (the webhook outbox).
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(schema)
            row = self._db.execute(
                f"SELECT value FROM {meta_table} WHERE key = ?", (version_key,)
            ).fetchone()
            if row is None:
                self._db.execute(
                    f"INSERT INTO {meta_table} (key, value) VALUES (?, ?)",
                    (version_key, str(version)),
                )
            elif str(row[0]) != str(version):
                raise StoreError(f"{label} {self.path}: schema {row[0]} is not {version}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {label} {self.path}: {exc}") from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
