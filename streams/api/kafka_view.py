"""The Kafka-mode read model: the compacted twin-state topic, materialised in memory.

The workers publish every twin they change to ``<prefix>.twin-state`` (compacted, keyed by
patient token, value ``{"v": 1, "state": TwinState.to_dict(), "offsets": ..., "items": ...}``;
a null value is a tombstone). This view reads that topic from the beginning on a background
thread with a group-less consumer (no offsets are committed: every API process builds its own
view). The same topic is the workers' table changelog, so the view shows exactly the state a
worker recovers from. It also materialises:

- ``<prefix>.alerts`` (each value a ``twin.alerting.Notification`` as JSON, optionally with a
  ``"v"`` key) into an ``AlertStore`` of its own, which then serves the alert routes exactly as
  in the embedded runtime; acknowledgements submitted through the API are audited and queued
  there;
- ``<prefix>.effects``, from ``forecast_lookback_s`` ago, keeping the latest ``forecast``
  effect per patient (the forecast shown on a tile).

History in Kafka mode comes from the twin itself: the 24 h window of 5-minute bin means for
the windowed channels (``History.binned`` is true), and the latest reading for other signals.

``ready()`` turns true once the view has read up to the log end offsets it saw at start, so a
restarted API does not show a half-loaded ward as if it were the whole ward.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams import metrics
from streams.alert_store import AlertStore
from streams.api.hub import EventHub
from streams.api.models import History, HistoryPoint, Page, PatientSummary, Twin
from streams.api.views import FORECAST_EFFECT_KIND, RiskRow, StateViewBase, window_history
from streams.kafka_settings import KafkaSettings
from twin import TwinState
from twin.alerting import Notification
from twin.signals import SIGNALS, Signal

log = logging.getLogger(__name__)

LAG_EVERY_S = 5.0


class KafkaView(StateViewBase):
    def __init__(
        self,
        settings: KafkaSettings,
        alerts: AlertStore,
        *,
        hub: EventHub | None = None,
        forecast_lookback_s: float = 6 * 3600,
        consumer_factory: Callable[[], Any] | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._forecast_records: dict[str, Mapping[str, Any]] = {}
        super().__init__(alerts, self._forecast_records.get)
        self.settings = settings
        self.topics = settings.topics
        self.hub = hub
        self.forecast_lookback_s = forecast_lookback_s
        self._factory = consumer_factory or self._consumer
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._states: dict[str, TwinState] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.consumed = 0

    # ---- lifecycle --------------------------------------------------------------------------

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            group_id=None,  # no group, no commits: each API process materialises for itself
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="vitaltwin-api-view",
            max_partition_fetch_bytes=8 * 1024 * 1024,  # a twin state is ~10-100 KB
        )

    def start(self) -> KafkaView:
        self._thread = threading.Thread(target=self._run, name="kafka-view", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def ready(self) -> bool:
        return self._ready.is_set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- the consumer thread ----------------------------------------------------------------

    def _assign(self, consumer: Any) -> tuple[list[Any], dict[Any, int]]:
        """Assign every partition of the three topics; return them and the catch-up targets."""
        wanted = (self.topics.twin_state, self.topics.alerts, self.topics.effects)
        tps: list[Any] = []
        while not self._stop.is_set():
            parts = {t: consumer.partitions_for_topic(t) for t in wanted}
            if parts[self.topics.twin_state]:
                tps = [TopicPartition(t, p) for t, ps in parts.items() for p in sorted(ps or ())]
                break
            # The workers create the topics; until then there is nothing to show.
            self._stop.wait(1.0)
        consumer.assign(tps)
        full = [tp for tp in tps if tp.topic != self.topics.effects]
        consumer.seek_to_beginning(*full)
        effect_tps = [tp for tp in tps if tp.topic == self.topics.effects]
        if effect_tps:
            since = self._wall_ms() - int(self.forecast_lookback_s * 1000)
            found = consumer.offsets_for_times(dict.fromkeys(effect_tps, since))
            for tp in effect_tps:
                hit = found.get(tp)
                if hit is None:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, hit.offset)
        targets = consumer.end_offsets(full) if full else {}
        return tps, dict(targets)

    def _run(self) -> None:
        try:
            consumer = self._factory()
        except Exception as exc:
            self.error = f"cannot connect: {type(exc).__name__}"
            log.error("Kafka view %s", self.error)
            return
        try:
            tps, targets = self._assign(consumer)
            last_lag = 0.0
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=200, max_records=5000)
                for tp, messages in batch.items():
                    self._apply(tp.topic, messages)
                if not self._ready.is_set() and all(
                    consumer.position(tp) >= end for tp, end in targets.items()
                ):
                    self._ready.set()
                if time.monotonic() - last_lag > LAG_EVERY_S:
                    last_lag = time.monotonic()
                    self._report_lag(consumer, tps)
        except Exception as exc:  # keep the API up; /healthz says what happened
            self.error = f"consumer failed: {type(exc).__name__}"
            log.exception("Kafka view consumer failed")
        finally:
            consumer.close()

    def _report_lag(self, consumer: Any, tps: list[Any]) -> None:
        for tp, end in consumer.end_offsets(tps).items():
            metrics.set_consumer_lag(tp.topic, tp.partition, end - consumer.position(tp))

    def _apply(self, topic: str, messages: list[Any]) -> None:
        self.consumed += len(messages)
        if topic == self.topics.twin_state:
            changed: dict[str, TwinState] = {}
            gone: list[str] = []
            for msg in messages:
                key = msg.key.decode() if isinstance(msg.key, bytes) else msg.key
                if key is None:
                    continue
                if msg.value is None:
                    gone.append(key)
                    continue
                state = _state_of(msg.value)
                if state is not None:
                    changed[key] = state
            with self._lock:
                self._states.update(changed)
                for key in gone:
                    self._states.pop(key, None)
            if self.hub is not None and self._ready.is_set():
                self.hub.publish_states(changed)
        elif topic == self.topics.alerts:
            notes = [n for msg in messages if (n := _notification_of(msg.value)) is not None]
            if notes and self.alert_store is not None:
                self.alert_store.record_notifications(notes)
                if self.hub is not None:
                    self.hub.publish_alerts({n.patient_id for n in notes})
        elif topic == self.topics.effects:
            for msg in messages:
                record = _json(msg.value)
                if record is not None and record.get("kind") == FORECAST_EFFECT_KIND:
                    pid = record.get("patient_id")
                    if isinstance(pid, str):
                        self._forecast_records[pid] = record

    # ---- TwinView ---------------------------------------------------------------------------

    def _state(self, patient_id: str) -> TwinState | None:
        with self._lock:
            return self._states.get(patient_id)

    def patients_by_risk(
        self, limit: int, offset: int, ward: str | None = None
    ) -> Page[PatientSummary]:
        with self._lock:
            rows = [RiskRow.of(st) for st in self._states.values()]
        return self.page_of(rows, self._state, limit, offset, ward)

    def twin(self, patient_id: str) -> Twin | None:
        state = self._state(patient_id)
        return None if state is None else self.twin_of(state)

    def history(
        self, patient_id: str, signal: Signal, start_ms: int, end_ms: int, limit: int, offset: int
    ) -> History | None:
        state = self._state(patient_id)
        if state is None:
            return None
        points = window_history(state, signal, start_ms, end_ms)
        if points is None:  # not a windowed channel: the twin keeps the latest reading only
            latest = state.latest.get(signal)
            points = (
                [HistoryPoint(t_ms=latest[0], value=latest[2])]
                if latest is not None and start_ms <= latest[0] < end_ms
                else []
            )
        return History(
            patient_id=patient_id,
            signal=signal.value,
            unit=SIGNALS[signal].unit,
            start_ms=start_ms,
            end_ms=end_ms,
            binned=True,
            points=points[offset : offset + limit],
            total=len(points),
            limit=limit,
            offset=offset,
        )


def _json(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _state_of(value: bytes) -> TwinState | None:
    raw = _json(value)
    if raw is None or raw.get("state") is None:
        return None
    try:
        return TwinState.from_dict(raw["state"])
    except Exception as exc:  # one unreadable record must not stop the view
        log.warning("skipping unreadable twin-state record: %s", type(exc).__name__)
        return None


def _notification_of(value: bytes | None) -> Notification | None:
    raw = _json(value)
    if raw is None:
        return None
    raw.pop("v", None)
    try:
        return Notification.model_validate(raw)
    except Exception as exc:
        log.warning("skipping unreadable alert record: %s", type(exc).__name__)
        return None
