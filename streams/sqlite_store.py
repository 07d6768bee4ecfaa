"""SQLite: the embedded runtime's durable store - twin states, time series, effects, dead letters.

Each micro-batch commits in one transaction together with the source position it reached, so
a restart resumes exactly where the last commit stopped: nothing applied twice, nothing lost.
Every write is keyed (vitals by patient, signal and event time; effects by effect id; dead
letters by their id), so replaying a batch is harmless anyway.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import StoreError
from streams.ingress import Accounting, DeadLetter
from streams.sqlite_file import SqliteFile
from twin import TwinState
from twin.effects import Effect, ScoreChanged

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS twins (
    patient_id TEXT PRIMARY KEY, state BLOB NOT NULL, watermark_ms INTEGER NOT NULL,
    news2_total INTEGER NOT NULL, news2_band TEXT NOT NULL, ward TEXT
);
CREATE TABLE IF NOT EXISTS positions (source TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vitals (
    patient_id TEXT NOT NULL, signal TEXT NOT NULL, t_ms INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (patient_id, signal, t_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scores (
    patient_id TEXT NOT NULL, t_ms INTEGER NOT NULL, news2 INTEGER NOT NULL, band TEXT NOT NULL,
    qsofa INTEGER NOT NULL, PRIMARY KEY (patient_id, t_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS effects (
    effect_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, kind TEXT NOT NULL,
    at_ms INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS effects_by_patient ON effects (patient_id, at_ms);
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL,
    source TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL, position TEXT
);
CREATE TABLE IF NOT EXISTS alert_books (patient_id TEXT PRIMARY KEY, book BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounting (
    id INTEGER PRIMARY KEY CHECK (id = 1), received INTEGER NOT NULL,
    processed INTEGER NOT NULL, dead_lettered INTEGER NOT NULL, by_reason TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Point:
    t_ms: int
    value: float


class SqliteStore(SqliteFile):
    def __init__(self, path: str | Path) -> None:
        super().__init__(
            path,
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            label="twin store",
            version_key="schema_version",
        )

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._tx()

    # ---- writes (inside a transaction) ------------------------------------------------------

    def commit_batch(
        self,
        *,
        states: dict[str, TwinState],
        readings: Iterable[tuple[str, str, int, float]],
        effects: Iterable[Effect],
        dead: Iterable[DeadLetter],
        positions: dict[str, str],
        accounting: Accounting,
    ) -> None:
        """Persist one micro-batch atomically with the source position it reached."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (pid, st.to_bytes(), st.watermark_ms, st.news2_total, st.news2_band, st.ward)
                    for pid, st in states.items()
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO vitals VALUES (?, ?, ?, ?)",
                list(readings),  # (patient, signal, t_ms, value): twin.readings
            )
            fx_rows = []
            score_rows = []
            for fx in effects:
                fx_rows.append(
                    (fx.effect_id, fx.patient_id, fx.kind, fx.at_ms, json.dumps(fx.to_dict()))
                )
                if isinstance(fx, ScoreChanged):
                    score_rows.append(
                        (fx.patient_id, fx.at_ms, fx.news2_total, fx.band, fx.qsofa_total)
                    )
            db.executemany("INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?, ?)", fx_rows)
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)", score_rows)
            db.executemany(
                "INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.dead_letter_id,
                        d.reason,
                        d.detail,
                        d.source,
                        d.kind,
                        d.payload,
                        d.received_at_ms,
                        d.position,
                    )
                    for d in dead
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO positions VALUES (?, ?)", list(positions.items())
            )
            db.execute(
                "INSERT OR REPLACE INTO accounting VALUES (1, ?, ?, ?, ?)",
                (
                    accounting.received,
                    accounting.processed,
                    accounting.dead_lettered,
                    json.dumps(accounting.by_reason, sort_keys=True),
                ),
            )

    def save_effect_rows(self, rows: list[tuple[str, str, str, int, str]]) -> None:
        """Effects made outside a batch commit (forecasts): (id, patient, kind, at_ms, JSON)."""
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?, ?)", rows)

    def save_alert_books(self, books: dict[str, bytes]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO alert_books VALUES (?, ?)", books.items())

    # ---- reads ------------------------------------------------------------------------------

    def load_alert_books(self) -> dict[str, bytes]:
        with self._lock:
            rows = self._db.execute("SELECT patient_id, book FROM alert_books").fetchall()
        return {pid: bytes(blob) for pid, blob in rows}

    def load_states(self) -> dict[str, TwinState]:
        with self._lock:
            rows = self._db.execute("SELECT patient_id, state FROM twins").fetchall()
        return {pid: TwinState.from_bytes(blob) for pid, blob in rows}

    def state(self, patient_id: str) -> TwinState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM twins WHERE patient_id = ?", (patient_id,)
            ).fetchone()
        return None if row is None else TwinState.from_bytes(row[0])

    def position(self, source: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT position FROM positions WHERE source = ?", (source,)
            ).fetchone()
        return None if row is None else str(row[0])

    def accounting(self) -> Accounting:
        with self._lock:
            row = self._db.execute(
                "SELECT received, processed, dead_lettered, by_reason FROM accounting"
            ).fetchone()
        if row is None:
            return Accounting()
        return Accounting(row[0], row[1], row[2], json.loads(row[3]))

    def patients_by_risk(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT patient_id, news2_total, news2_band, watermark_ms, ward FROM twins "
                "ORDER BY news2_total DESC, patient_id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        keys = ("patient_id", "news2_total", "news2_band", "watermark_ms", "ward")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def history(self, patient_id: str, signal: str, start_ms: int, end_ms: int) -> list[Point]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t_ms, value FROM vitals WHERE patient_id = ? AND signal = ? "
                "AND t_ms >= ? AND t_ms < ? ORDER BY t_ms",
                (patient_id, signal, start_ms, end_ms),
            ).fetchall()
        return [Point(t, v) for t, v in rows]

    def effects(
        self, patient_id: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT body FROM effects WHERE 1=1"
        args: list[Any] = []
        if patient_id is not None:
            sql += " AND patient_id = ?"
            args.append(patient_id)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY at_ms, effect_id", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT dead_letter_id, reason, detail, source, kind, payload, received_at_ms,"
                " position FROM dead_letters ORDER BY received_at_ms, dead_letter_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def count(self, table: str) -> int:
        if table not in {"twins", "vitals", "scores", "effects", "dead_letters"}:
            raise StoreError(f"no table {table!r}")
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
