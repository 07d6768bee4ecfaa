"""The durable webhook outbox (SQLite): what must be sent, how far each message got, and why
it failed.

Crash safety rests on three rules:

1. A message is committed to the outbox *before* the runtime commits the input that produced
   it (or, in Kafka mode, before the consumer commits its offset); enqueueing is idempotent on
   ``(receiver, webhook_id)``, so producing a message twice stores it once.
2. An attempt is recorded (attempts + 1 and the next retry time) *before* the request goes
   out. A process killed mid-request leaves the message pending with its retry scheduled, so a
   restart sends it again - with the same ``webhook-id``, which receivers deduplicate on - and
   a message that crashes the deliverer every time still runs out of attempts.
3. Only a 2xx marks a message delivered; exhausted messages, and everything queued for an
   endpoint that answered 410 Gone, move to ``dead_letters`` with the reason.

Per-patient order: ``due`` offers only the oldest pending message of each (receiver, patient),
so a later alert never overtakes an earlier one that is waiting for a retry.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit survives a power cut. One
``Outbox`` may be shared by threads (it serialises on a lock); several processes may open the
same file (SQLite locks; the busy timeout waits).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streams.sqlite_file import SqliteFile
from streams.webhooks.routing import OutboundMessage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    delivered_ms INTEGER,
    UNIQUE (receiver, webhook_id)
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (status, receiver, ordering_key, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS receiver_state (
    receiver TEXT PRIMARY KEY,
    disabled_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""

_HEADS = """
SELECT m.seq, m.webhook_id, m.receiver, m.ordering_key, m.body, m.attempts, m.next_attempt_ms,
    m.created_ms
FROM messages m JOIN (
    SELECT MIN(seq) AS seq FROM messages WHERE status = 'pending'
    GROUP BY receiver, ordering_key
) h ON h.seq = m.seq
"""


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    webhook_id: str
    receiver: str
    ordering_key: str
    body: bytes
    attempts: int
    next_attempt_ms: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seq: int
    webhook_id: str
    receiver: str
    body: bytes
    attempts: int
    reason: str
    dead_ms: int


class Outbox(SqliteFile):
    def __init__(self, path: Path | str) -> None:
        super().__init__(
            path,
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            label="webhook outbox",
            meta_table="meta",
            synchronous="FULL",
        )

    # ---- producer side ----------------------------------------------------------------

    def enqueue(self, messages: Iterable[OutboundMessage], now_ms: int | None = None) -> int:
        """Store messages for delivery (idempotent); returns how many were new.

        ``now_ms`` is wall-clock time (default: now), like every time in the outbox: it is when
        the first attempt is due, not the alerts' event time. A message for a receiver disabled
        by 410 goes straight to the dead letters.
        """
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        added = 0
        with self._tx() as db:
            disabled = dict(db.execute("SELECT receiver, reason FROM receiver_state").fetchall())
            for m in messages:
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages (webhook_id, receiver, ordering_key, body,"
                    " created_ms, status, next_attempt_ms) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                    (m.webhook_id, m.receiver, m.ordering_key, m.body, now_ms, now_ms),
                )
                if cur.rowcount:
                    added += 1
                    if m.receiver in disabled:
                        self._kill(
                            db, cur.lastrowid, f"receiver disabled: {disabled[m.receiver]}", now_ms
                        )
        return added

    # ---- deliverer side ---------------------------------------------------------------

    def due(self, now_ms: int, limit: int = 100, exclude: Iterable[str] = ()) -> list[Pending]:
        """Head-of-line pending messages whose attempt is due, oldest first."""
        skip = tuple(exclude)
        sql = _HEADS + " WHERE m.next_attempt_ms <= ?"
        if skip:
            sql += f" AND m.receiver NOT IN ({','.join('?' * len(skip))})"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY m.seq LIMIT ?", (now_ms, *skip, limit))
            return [Pending(*r) for r in rows.fetchall()]

    def next_due_ms(self, exclude: Iterable[str] = ()) -> int | None:
        skip = tuple(exclude)
        sql = "SELECT MIN(next_attempt_ms) FROM (" + _HEADS
        if skip:
            sql += f" WHERE m.receiver NOT IN ({','.join('?' * len(skip))})"
        with self._lock:
            row = self._db.execute(sql + ")", skip).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def begin_attempt(self, seq: int, attempts: int, retry_at_ms: int) -> None:
        """Record an attempt before it is made (see the module docstring, rule 2)."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET attempts = ?, next_attempt_ms = ? WHERE seq = ?",
                (attempts, retry_at_ms, seq),
            )

    def mark_delivered(self, seq: int, status: int, now_ms: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET status = 'delivered', last_status = ?, last_error = NULL,"
                " delivered_ms = ? WHERE seq = ?",
                (status, now_ms, seq),
            )

    def mark_failed(self, seq: int, error: str, status: int | None, retry_at_ms: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET last_error = ?, last_status = ?, next_attempt_ms = ?"
                " WHERE seq = ?",
                (error[:500], status, retry_at_ms, seq),
            )

    def dead_letter(self, seq: int, reason: str, now_ms: int) -> None:
        with self._tx() as db:
            self._kill(db, seq, reason, now_ms)

    def disable_receiver(self, receiver: str, reason: str, now_ms: int) -> int:
        """Stop delivering to ``receiver``; its pending messages become dead letters."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO receiver_state VALUES (?, ?, ?)", (receiver, now_ms, reason)
            )
            seqs = [
                r[0]
                for r in db.execute(
                    "SELECT seq FROM messages WHERE receiver = ? AND status = 'pending'",
                    (receiver,),
                )
            ]
            for seq in seqs:
                self._kill(db, seq, f"receiver disabled: {reason}", now_ms)
        return len(seqs)

    def enable_receiver(self, receiver: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM receiver_state WHERE receiver = ?", (receiver,))
            return bool(cur.rowcount)

    def disabled_receivers(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT receiver, reason FROM receiver_state").fetchall())

    @staticmethod
    def _kill(db: sqlite3.Connection, seq: int | None, reason: str, now_ms: int) -> None:
        db.execute(
            "INSERT OR REPLACE INTO dead_letters SELECT seq, webhook_id, receiver, body, attempts,"
            " ?, ? FROM messages WHERE seq = ?",
            (reason[:1000], now_ms, seq),
        )
        db.execute(
            "UPDATE messages SET status = 'dead', last_error = ? WHERE seq = ?", (reason[:500], seq)
        )

    # ---- inspection -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status")
            found = dict(rows.fetchall())
        return {s: int(found.get(s, 0)) for s in ("pending", "delivered", "dead")}

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM dead_letters ORDER BY seq").fetchall()
        return [DeadLetter(*r) for r in rows]

    def webhook_ids(self, status: str | None = None) -> list[str]:
        """Webhook ids in enqueue order (optionally of one status)."""
        sql = "SELECT webhook_id FROM messages"
        params: tuple[str, ...] = ()
        if status is not None:
            sql, params = sql + " WHERE status = ?", (status,)
        with self._lock:
            return [r[0] for r in self._db.execute(sql + " ORDER BY seq", params)]
