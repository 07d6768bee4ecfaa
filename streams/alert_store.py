"""SQLite store of alerts as clinicians see them, their audit trail, and queued commands.

- ``alerts``: one row per alert id, kept current from the notifications the policy emits
  (``record_notifications``) and from clinicians' commands.
- ``audit``: who did what, when, to which alert - written when a command is submitted
  (outcome ``requested``) and updated when the runtime applies it (``applied``, ``rejected``
  or ``duplicate``). Feeds evaluation: time to acknowledgement, labelled false alarms.
- ``commands``: the mailbox between the CLI/API and the runtime. The runtime reads
  ``pending_commands()``, applies each with ``twin.alerting.apply_command`` to the patient's
  alert book, and reports the audit records back with ``record_applied``.

Rows carry the pseudonymous patient token only; nothing here is logged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from streams.sqlite_file import SqliteFile
from twin.alerting import AlertCommand, AuditRecord, Episode, Notification
from twin.alerting.commands import audit_id

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, patient_id TEXT NOT NULL,
    ward TEXT, rule TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL,
    starts_ms INTEGER NOT NULL, ends_ms INTEGER, acknowledged_by TEXT, acknowledged_ms INTEGER,
    notifications INTEGER NOT NULL, last_notification_id TEXT NOT NULL,
    last_at_ms INTEGER NOT NULL, summary TEXT NOT NULL, why TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts (status, starts_ms);
CREATE INDEX IF NOT EXISTS alerts_by_patient ON alerts (patient_id, starts_ms);
CREATE TABLE IF NOT EXISTS alert_notifications (
    notification_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    audit_id TEXT PRIMARY KEY, command_id TEXT NOT NULL, action TEXT NOT NULL,
    patient_id TEXT NOT NULL, alert_id TEXT, rule TEXT, by TEXT NOT NULL, at_ms INTEGER NOT NULL,
    label TEXT, note TEXT, outcome TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_alert ON audit (alert_id, at_ms);
CREATE TABLE IF NOT EXISTS alert_commands (
    command_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, body TEXT NOT NULL,
    submitted_ms INTEGER NOT NULL, applied_ms INTEGER
);
"""

_ALERT_COLUMNS = (
    "alert_id, patient_id, ward, rule, severity, status, starts_ms, ends_ms, acknowledged_by,"
    " acknowledged_ms, notifications, last_at_ms, summary"
)


class AlertStore(SqliteFile):
    def __init__(self, path: Path | str) -> None:
        super().__init__(
            path,
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            label="alert store",
            meta_table="alert_meta",
        )

    # ---- from the runtime -------------------------------------------------------------

    def record_notifications(self, notes: Iterable[Notification]) -> None:
        """Keep ``alerts`` current. Idempotent: a notification seen before changes nothing."""
        with self._tx() as db:
            for n in notes:
                new = db.execute(
                    "INSERT OR IGNORE INTO alert_notifications VALUES (?, ?)",
                    (n.notification_id, n.alert_id),
                ).rowcount
                if not new:
                    continue
                status = "resolved" if n.status == "resolved" else "firing"
                if n.acknowledged and status == "firing":
                    status = "acknowledged"
                db.execute(
                    "INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (alert_id) DO UPDATE SET"
                    # A local acknowledgement stands until the runtime's book resolves it.
                    "  status = CASE WHEN excluded.status = 'firing'"
                    "    AND alerts.status = 'acknowledged' THEN 'acknowledged'"
                    "    ELSE excluded.status END,"
                    "  ends_ms = excluded.ends_ms, notifications = alerts.notifications + 1,"
                    "  last_notification_id = excluded.last_notification_id,"
                    "  last_at_ms = excluded.last_at_ms, summary = excluded.summary,"
                    "  why = excluded.why",
                    (
                        n.alert_id,
                        n.fingerprint,
                        n.patient_id,
                        n.ward,
                        n.rule,
                        n.severity.value,
                        status,
                        n.starts_at_ms,
                        n.ends_at_ms,
                        None,
                        None,
                        1,
                        n.notification_id,
                        n.at_ms,
                        n.why.summary,
                        n.why.model_dump_json(),
                    ),
                )

    def pending_commands(
        self, patient_id: str | None = None, limit: int = 500
    ) -> list[AlertCommand]:
        sql = "SELECT body FROM alert_commands WHERE applied_ms IS NULL"
        params: tuple[Any, ...] = ()
        if patient_id is not None:
            sql, params = sql + " AND patient_id = ?", (patient_id,)
        with self._lock:
            rows = self._db.execute(
                sql + " ORDER BY submitted_ms, command_id LIMIT ?", (*params, limit)
            )
            return [AlertCommand.model_validate_json(r[0]) for r in rows.fetchall()]

    def record_applied(self, records: Iterable[AuditRecord], now_ms: int) -> None:
        """The runtime applied these commands: store their outcome, close the mailbox rows."""
        with self._tx() as db:
            for rec in records:
                self._audit(db, rec.model_dump(), rec.outcome)
                db.execute(
                    "UPDATE alert_commands SET applied_ms = ? WHERE command_id = ?",
                    (now_ms, rec.command_id),
                )
                if rec.outcome == "applied" and rec.alert_id:
                    self._reflect(db, rec.action, rec.alert_id, rec.by, rec.at_ms)

    # ---- from clinicians (CLI, API) ---------------------------------------------------

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            cur = self._db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,)
            )
            row = cur.fetchone()
            return None if row is None else dict(zip(_names(cur), row, strict=True))

    def submit(self, cmd: AlertCommand, now_ms: int) -> str:
        """Queue a command for the runtime and audit the request; returns the audit id."""
        aid = audit_id(cmd.command_id)  # the same id the runtime's record will carry
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO alert_commands VALUES (?, ?, ?, ?, NULL)",
                (cmd.command_id, cmd.patient_id, cmd.model_dump_json(), now_ms),
            )
            record = {**cmd.model_dump(), "audit_id": aid, "detail": ""}
            rule = None
            if cmd.alert_id:
                row = db.execute(
                    "SELECT rule FROM alerts WHERE alert_id = ?", (cmd.alert_id,)
                ).fetchone()
                rule = None if row is None else row[0]
            record["rule"] = cmd.rule or rule
            self._audit(db, record, "requested", keep_outcome=True)
            if cmd.alert_id:
                self._reflect(db, cmd.action, cmd.alert_id, cmd.by, cmd.at_ms)
        return aid

    @staticmethod
    def _reflect(db: sqlite3.Connection, action: str, alert_id: str, by: str, at_ms: int) -> None:
        """Show an acknowledgement at once; the runtime's book confirms it later."""
        if action == "acknowledge":
            db.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_by = ?,"
                " acknowledged_ms = ? WHERE alert_id = ? AND status = 'firing'",
                (by, at_ms, alert_id),
            )
        elif action == "unacknowledge":
            db.execute(
                "UPDATE alerts SET status = 'firing', acknowledged_by = NULL,"
                " acknowledged_ms = NULL WHERE alert_id = ? AND status = 'acknowledged'",
                (alert_id,),
            )

    @staticmethod
    def _audit(
        db: sqlite3.Connection, r: dict[str, Any], outcome: str, keep_outcome: bool = False
    ) -> None:
        conflict = (
            "NOTHING"
            if keep_outcome
            else "UPDATE SET outcome = excluded.outcome, detail = excluded.detail"
        )
        db.execute(
            "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            f" ON CONFLICT (audit_id) DO {conflict}",
            (
                r["audit_id"],
                r["command_id"],
                r["action"],
                r["patient_id"],
                r.get("alert_id"),
                r.get("rule"),
                r["by"],
                r["at_ms"],
                r.get("label"),
                r.get("note"),
                outcome,
                r.get("detail", ""),
            ),
        )

    # ---- reading ----------------------------------------------------------------------

    def list_alerts(
        self, *, status: str | None = None, patient_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if patient_id is not None:
            where.append("patient_id = ?")
            params.append(patient_id)
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            cur = self._db.execute(sql + " ORDER BY starts_ms DESC LIMIT ?", (*params, limit))
            names = _names(cur)
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def audit_log(self, alert_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit"
        params: tuple[Any, ...] = ()
        if alert_id is not None:
            sql, params = sql + " WHERE alert_id = ?", (alert_id,)
        with self._lock:
            cur = self._db.execute(sql + " ORDER BY at_ms, audit_id LIMIT ?", (*params, limit))
            names = _names(cur)
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def episodes(self) -> list[Episode]:
        """Alert episodes with acknowledgement times and labels, for ``alert_metrics``."""
        with self._lock:
            alerts = self._db.execute(
                "SELECT alert_id, patient_id, rule, starts_ms, notifications, acknowledged_ms"
                " FROM alerts ORDER BY starts_ms"
            ).fetchall()
            acks = dict(
                self._db.execute(
                    "SELECT alert_id, MIN(at_ms) FROM audit WHERE action = 'acknowledge'"
                    " AND outcome IN ('requested', 'applied') GROUP BY alert_id"
                ).fetchall()
            )
            labels: dict[str, list[str]] = {}
            for aid, label in self._db.execute(
                "SELECT alert_id, label FROM audit WHERE action = 'annotate' AND label IS NOT NULL"
                " ORDER BY at_ms"
            ):
                labels.setdefault(aid, []).append(label)
        return [
            Episode(
                patient_id=pid,
                rule=rule,
                fired_at_ms=starts,
                notifications=count,
                acknowledged_at_ms=acks.get(aid, acked),
                labels=tuple(labels.get(aid, ())),
            )
            for aid, pid, rule, starts, count, acked in alerts
        ]


def _names(cur: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cur.description]


class ForwardingAlertStore(AlertStore):
    """Kafka mode: the API's own alert store, plus every command forwarded to the workers.

    The workers own the alert books (atomically with the twins), so an acknowledgement takes
    effect there: it travels on ``<prefix>.alert-commands``, keyed by patient, to the worker
    that owns the patient, and comes back as a notification on the alerts topic.
    """

    def __init__(self, path: Path | str, send: Callable[[AlertCommand], None]) -> None:
        super().__init__(path)
        self._send = send

    def submit(self, cmd: AlertCommand, now_ms: int) -> str:
        audit = super().submit(cmd, now_ms)
        self._send(cmd)
        return audit
