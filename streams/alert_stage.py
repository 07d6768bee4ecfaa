"""The alert stage of a runtime: after each batch, advance every touched patient's alert book.

Runs the pure policy (``twin.alerting.evaluate``) against the new twin states, applies the
clinicians' pending commands (acknowledge, silence, ... submitted through the CLI or API), keeps
the alert store current and hands notifications to the webhook outbox. Books are persisted after
each batch; a replayed batch after a crash re-evaluates against the saved books, which is
idempotent (a firing alert does not fire again, notification ids are deterministic, and the
outbox ignores a webhook-id it already holds).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from streams.alert_store import AlertStore
from streams.pipeline import Outcome
from streams.sqlite_store import SqliteStore
from streams.webhooks.config import WebhookConfig
from streams.webhooks.delivery import Deliverer
from streams.webhooks.outbox import Outbox
from streams.webhooks.routing import route
from twin import TwinState
from twin.alerting import (
    DEFAULT_POLICY,
    AlertBook,
    AlertCommand,
    AlertPolicy,
    AuditRecord,
    ForecastRisk,
    Notification,
    apply_command,
    evaluate,
    new_book,
)
from twin.alerting.book import FIRING_STATUSES

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AlertCounts:
    notifications: int = 0
    firing: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class AlertStage:
    def __init__(
        self,
        store: SqliteStore,
        alerts: AlertStore,
        *,
        policy: AlertPolicy = DEFAULT_POLICY,
        outbox: Outbox | None = None,
        webhooks: WebhookConfig | None = None,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.policy = policy
        self.outbox = outbox
        self.webhooks = webhooks
        self.books: dict[str, AlertBook] = {
            pid: AlertBook.from_bytes(blob) for pid, blob in store.load_alert_books().items()
        }
        self.counts = AlertCounts()
        self.forecasts: dict[str, ForecastRisk] = {}
        self._deliverer: Deliverer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_delivery(self) -> None:
        """Deliver webhooks from the outbox on a background thread (if receivers exist)."""
        if self.outbox is None or self.webhooks is None or not self.webhooks.receivers:
            return
        self._deliverer = Deliverer(self.outbox, self.webhooks)
        self._thread = threading.Thread(
            target=self._deliverer.run, args=(self._stop,), name="webhooks", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._deliverer is not None:
            self._deliverer.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def on_batch(self, outcome: Outcome, states: dict[str, TwinState]) -> None:
        notes: list[Notification] = []
        audits: list[AuditRecord] = []
        changed: dict[str, bytes] = {}
        commands = self.alerts.pending_commands()
        by_patient: dict[str, list[AlertCommand]] = {}
        for cmd in commands:
            by_patient.setdefault(cmd.patient_id, []).append(cmd)
        for pid in set(outcome.touched) | set(by_patient):
            state = states.get(pid)
            if state is None:
                continue
            book = self.books.get(pid)
            for cmd in by_patient.get(pid, []):
                # A command for a patient without alerts still gets an audited outcome.
                book, audit = apply_command(book or new_book(pid), cmd)
                audits.append(audit)
            book, fresh = evaluate(
                book, state, state.watermark_ms, self.policy, self.forecasts.pop(pid, None)
            )
            self.books[pid] = book
            changed[pid] = book.to_bytes()
            notes.extend(fresh)
        if audits:
            self.alerts.record_applied(audits, int(time.time() * 1000))
        if notes:
            self.alerts.record_notifications(notes)
            if self.outbox is not None and self.webhooks is not None and self.webhooks.receivers:
                self.outbox.enqueue(route(self.webhooks, notes))
                if self._deliverer is not None:
                    self._deliverer.wake()
        if changed:
            self.store.save_alert_books(changed)
        self.counts.notifications += len(notes)
        for n in notes:
            self.counts.by_rule[n.rule] = self.counts.by_rule.get(n.rule, 0) + 1
        self.counts.firing = sum(
            1 for b in self.books.values() for a in b.active.values() if a.status in FIRING_STATUSES
        )
