"""Live updates for an API that does not share a process with the runtime.

``vitaltwin serve`` over an embedded store that another process (``vitaltwin ingest``, a
runtime) fills has no ``on_batch`` hook to publish from. ``StorePoller`` watches the store
instead: every ``interval_s`` it reads the twins' watermarks and NEWS2 totals (one indexed
query, no state loaded) and the newest alerts, and publishes the twins and alerts that changed.
"""

from __future__ import annotations

import logging
import threading

from streams.alert_store import AlertStore
from streams.api.hub import EventHub
from streams.sqlite_store import SqliteStore

log = logging.getLogger(__name__)


class StorePoller:
    def __init__(
        self,
        store: SqliteStore,
        alerts: AlertStore | None,
        hub: EventHub,
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.hub = hub
        self.interval_s = interval_s
        self._seen: dict[str, tuple[int, int, str]] = {}
        self._alerts_seen: dict[str, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StorePoller:
        self.poll()  # the baseline: what is there now is not news
        self._thread = threading.Thread(target=self._run, name="store-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # a locked or busy store: try again next time
                log.exception("store poll failed")

    def poll(self) -> tuple[set[str], set[str]]:
        """Publish what changed since the last poll; return (twins, alert patients) changed."""
        changed: set[str] = set()
        for row in self.store.patients_by_risk(limit=1 << 31, offset=0):
            key = (row["watermark_ms"], row["news2_total"], row["news2_band"])
            if self._seen.get(row["patient_id"]) != key:
                self._seen[row["patient_id"]] = key
                changed.add(row["patient_id"])
        alerted: set[str] = set()
        if self.alerts is not None:
            for a in self.alerts.list_alerts(limit=500):
                key2 = (a["status"], a["last_at_ms"])
                if self._alerts_seen.get(a["alert_id"]) != key2:
                    self._alerts_seen[a["alert_id"]] = key2
                    alerted.add(a["patient_id"])
        if self._thread is not None:  # not the baseline poll
            states = {pid: st for pid in changed if (st := self.store.state(pid)) is not None}
            self.hub.publish_states(states)
            self.hub.publish_alerts(alerted)
        return changed, alerted
