"""Read models the API serves from: one protocol, an embedded and a Kafka implementation.

``TwinView`` is everything the routes read. ``EmbeddedView`` reads the embedded runtime's
SQLite store and alert store; ``streams.api.kafka_view.KafkaView`` keeps an in-memory
materialisation of the compacted twin-state topic (and materialises the alerts topic into an
alert store of its own), never the workers' private tables. Both build their answers with the
functions here, so a tile looks the same whichever runtime fills it.

Forecasts are optional everywhere: the twin carries no forecast, so a view is given a
``ForecastLookup`` (patient -> latest forecast record, or None) and renders what it returns
through ``forecast_from_record``, which accepts the forecaster's record shapes (see docs/api.md).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streams.alert_store import AlertStore
from streams.api.models import (
    Alert,
    Driver,
    Forecast,
    History,
    HistoryPoint,
    Medication,
    Page,
    PatientSummary,
    QuantilePoint,
    QuantileSeries,
    Reading,
    RiskPoint,
    Sparkline,
    Twin,
)
from streams.sqlite_store import SqliteStore
from twin import TwinState
from twin.signals import CHANNEL_INDEX, SIGNALS, Signal

log = logging.getLogger(__name__)

BAND_RANK: dict[str, int] = {"high": 4, "medium": 3, "low_medium": 2, "low": 1, "routine": 0}
ACTIVE_STATUSES = ("firing", "acknowledged")
SPARKLINE_SIGNAL = Signal.HEART_RATE
SPARKLINE_BINS = 36  # 3 h of 5-minute bins
ALERT_SCAN_LIMIT = 10_000  # alerts counted for ``total``; a ward's alert table is far smaller
FORECAST_EFFECT_KIND = "forecast"

ForecastLookup = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class RiskRow:
    """What sorting by risk needs, without loading the whole twin."""

    patient_id: str
    news2_band: str
    news2_total: int
    watermark_ms: int
    ward: str | None

    @classmethod
    def of(cls, state: TwinState) -> RiskRow:
        return cls(
            state.patient_id, state.news2_band, state.news2_total, state.watermark_ms, state.ward
        )


class TwinView(Protocol):
    """What the API reads. Every method is safe to call from any thread."""

    def ready(self) -> bool:
        """True once the view has caught up with its source (the Kafka view loads first)."""
        ...

    def patients_by_risk(
        self, limit: int, offset: int, ward: str | None = None
    ) -> Page[PatientSummary]: ...

    def twin(self, patient_id: str) -> Twin | None: ...

    def history(
        self, patient_id: str, signal: Signal, start_ms: int, end_ms: int, limit: int, offset: int
    ) -> History | None: ...

    def alerts(
        self, *, status: str | None, patient_id: str | None, limit: int, offset: int
    ) -> Page[Alert]: ...

    def alert(self, alert_id: str) -> Alert | None: ...

    def summarise(self, state: TwinState) -> PatientSummary: ...

    def close(self) -> None: ...


# ---- building answers from a twin state ------------------------------------------------------


def reading(signal: Signal, value: float, t_ms: int) -> Reading:
    return Reading(value=value, t_ms=t_ms, unit=SIGNALS[signal].unit)


def vitals_of(state: TwinState) -> dict[str, Reading]:
    return {
        s.value: reading(s, r[2], r[0])
        for s, r in sorted(state.latest.items())
        if SIGNALS[s].kind == "vital"
    }


def labs_of(state: TwinState) -> dict[str, Reading]:
    return {
        s.value: reading(s, r[2], r[0])
        for s, r in sorted(state.latest.items())
        if SIGNALS[s].kind == "lab"
    }


def sparkline_of(state: TwinState, signal: Signal = SPARKLINE_SIGNAL) -> Sparkline | None:
    if state.watermark_ms < 0:
        return None
    values, mask = state.window()
    row = values[CHANNEL_INDEX[signal], -SPARKLINE_BINS:]
    seen = mask[CHANNEL_INDEX[signal], -SPARKLINE_BINS:]
    if not seen.any():
        return None
    end_ms = (state.watermark_ms // state.bin_ms + 1) * state.bin_ms
    points = [round(float(v), 2) if ok else None for v, ok in zip(row, seen, strict=True)]
    return Sparkline(signal=signal.value, bin_ms=state.bin_ms, end_ms=end_ms, values=points)


def medications_of(state: TwinState) -> list[Medication]:
    return [
        Medication(
            medication=name,
            action=str(rec[3]),
            first_ms=None if rec[0] < 0 else rec[0],
            last_ms=rec[1],
            dose=rec[4],
        )
        for name, rec in sorted(state.medications.items())
    ]


def window_history(
    state: TwinState, signal: Signal, start_ms: int, end_ms: int
) -> list[HistoryPoint] | None:
    """Bin means of a windowed channel from the twin itself (None: not a windowed channel)."""
    if signal not in CHANNEL_INDEX:
        return None
    if state.watermark_ms < 0:
        return []
    values, mask = state.window()
    n = values.shape[1]
    last_bin = state.watermark_ms // state.bin_ms
    starts = (np.arange(last_bin - n + 1, last_bin + 1, dtype=np.int64)) * state.bin_ms
    ch = CHANNEL_INDEX[signal]
    return [
        HistoryPoint(t_ms=int(t), value=round(float(v), 3))
        for t, v, ok in zip(starts, values[ch], mask[ch], strict=True)
        if ok and start_ms <= t < end_ms
    ]


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _quantile_key(key: str) -> str | None:
    """'p10' / 'q10' / '0.1' -> '0.1'; anything else -> None."""
    text = str(key).strip().lower()
    if text[:1] in ("p", "q") and text[1:].isdigit():
        return str(int(text[1:]) / 100)
    level = _num(text)
    return None if level is None or not 0 < level < 1 else str(level)


def _quantile_point(raw: Mapping[str, Any], made_at_ms: int) -> QuantilePoint | None:
    horizon = _num(raw.get("horizon_min"))
    if horizon is None and _num(raw.get("horizon_h")) is not None:
        horizon = float(raw["horizon_h"]) * 60
    t_ms = _num(raw.get("t_ms"))
    if horizon is None and t_ms is None:
        return None
    if horizon is None:
        horizon = ((t_ms or 0) - made_at_ms) / 60_000
    nested = raw.get("quantiles")
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else raw
    levels: dict[str, float] = {}
    for key, value in source.items():
        level, number = _quantile_key(key), _num(value)
        if level is not None and number is not None:
            levels[level] = number
    if not levels:
        return None
    t = int(t_ms) if t_ms is not None else made_at_ms + int(horizon * 60_000)
    return QuantilePoint(t_ms=t, horizon_min=int(horizon), quantiles=levels)


def forecast_from_record(raw: Mapping[str, Any] | None) -> Forecast | None:
    """A forecaster's record as the API's ``Forecast``; None when there is nothing usable.

    Accepts ``risk`` as ``{horizon_h: probability}`` (``twin.alerting.ForecastRisk``) or a list
    of ``{horizon_h, probability, lower?, upper?}``; ``quantiles`` as ``{signal: [point, ...]}``
    or a list of ``{signal, points}``, each point ``{horizon_min | t_ms, p02..p98 | quantiles}``;
    ``explanation`` as a list of ``{feature, weight, detail?}``.
    """
    if not isinstance(raw, Mapping):
        return None
    made = _num(raw.get("made_at_ms", raw.get("at_ms")))
    if made is None:
        return None
    made_at_ms = int(made)
    risk: list[RiskPoint] = []
    raw_risk = raw.get("risk") or []
    if isinstance(raw_risk, Mapping):
        raw_risk = [{"horizon_h": h, "probability": p} for h, p in raw_risk.items()]
    for item in raw_risk if isinstance(raw_risk, list) else []:
        if not isinstance(item, Mapping):
            continue
        h, p = _num(item.get("horizon_h")), _num(item.get("probability"))
        if h is None or p is None or not 0 <= p <= 1:
            continue
        risk.append(
            RiskPoint(
                horizon_h=h,
                probability=p,
                lower=_num(item.get("lower")),
                upper=_num(item.get("upper")),
            )
        )
    risk.sort(key=lambda r: r.horizon_h)
    series: list[QuantileSeries] = []
    raw_q = raw.get("quantiles") or []
    if isinstance(raw_q, Mapping):
        raw_q = [{"signal": s, "points": pts} for s, pts in raw_q.items()]
    for item in raw_q if isinstance(raw_q, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("points"), list):
            continue
        pts = [
            qp
            for p in item["points"]
            if isinstance(p, Mapping) and (qp := _quantile_point(p, made_at_ms)) is not None
        ]
        if pts:
            pts.sort(key=lambda q: q.t_ms)
            series.append(QuantileSeries(signal=str(item.get("signal", "")), points=pts))
    drivers = [
        Driver(feature=str(d["feature"])[:128], weight=w, detail=str(d.get("detail", ""))[:256])
        for d in (raw.get("explanation") or [])
        if isinstance(d, Mapping) and "feature" in d and (w := _num(d.get("weight"))) is not None
    ]
    return Forecast(
        made_at_ms=made_at_ms,
        model=str(raw.get("model", "unknown"))[:128],
        outcome=str(raw.get("outcome", "deterioration"))[:64],
        risk=risk,
        quantiles=series,
        explanation=drivers,
    )


def alert_of(row: Mapping[str, Any]) -> Alert:
    return Alert.model_validate({k: row[k] for k in Alert.model_fields if k in row})


class AlertReads:
    """The alert half of a view, over an ``AlertStore``."""

    def __init__(self, store: AlertStore | None) -> None:
        self.alert_store = store

    def active_alerts(self, patient_id: str) -> list[Alert]:
        if self.alert_store is None:
            return []
        rows = self.alert_store.list_alerts(patient_id=patient_id, limit=100)
        return [alert_of(r) for r in rows if r["status"] in ACTIVE_STATUSES]

    def alerts(
        self, *, status: str | None, patient_id: str | None, limit: int, offset: int
    ) -> Page[Alert]:
        if self.alert_store is None:
            return Page[Alert](items=[], total=0, limit=limit, offset=offset)
        rows = self.alert_store.list_alerts(
            status=status, patient_id=patient_id, limit=ALERT_SCAN_LIMIT
        )
        items = [alert_of(r) for r in rows[offset : offset + limit]]
        return Page[Alert](items=items, total=len(rows), limit=limit, offset=offset)

    def alert(self, alert_id: str) -> Alert | None:
        if self.alert_store is None:
            return None
        row = self.alert_store.alert(alert_id)
        return None if row is None else alert_of(row)


class StateViewBase(AlertReads):
    """Summaries and twins from states; subclasses say where states and history come from."""

    def __init__(self, alerts: AlertStore | None, forecasts: ForecastLookup | None) -> None:
        super().__init__(alerts)
        self._forecasts = forecasts
        self._forecast_cache: dict[str, tuple[int, Forecast | None]] = {}
        self._cache_lock = threading.Lock()

    def forecast(self, state: TwinState) -> Forecast | None:
        return self.forecast_at(state.patient_id, state.watermark_ms)

    def forecast_at(self, patient_id: str, watermark_ms: int) -> Forecast | None:
        """The latest forecast, looked up again only when the twin moved on."""
        if self._forecasts is None:
            return None
        with self._cache_lock:
            hit = self._forecast_cache.get(patient_id)
        if hit is not None and hit[0] == watermark_ms:
            return hit[1]
        try:
            found = forecast_from_record(self._forecasts(patient_id))
        except Exception:  # a broken forecast source must not take the ward view down
            log.exception("forecast lookup failed")
            found = None
        with self._cache_lock:
            self._forecast_cache[patient_id] = (watermark_ms, found)
        return found

    def summarise(self, state: TwinState) -> PatientSummary:
        fc = self.forecast(state)
        return PatientSummary(**self._summary_fields(state, fc))

    def _summary_fields(self, state: TwinState, fc: Forecast | None) -> dict[str, Any]:
        return {
            "patient_id": state.patient_id,
            "ward": state.ward,
            "news2_total": state.news2_total,
            "news2_band": state.news2_band,
            "news2_complete": not state.news2_missing,
            "qsofa_total": state.qsofa_total,
            "watermark_ms": state.watermark_ms,
            "vitals": vitals_of(state),
            "sparkline": sparkline_of(state),
            "forecast_risk": max((r.probability for r in fc.risk), default=None) if fc else None,
            "risk_trajectory": fc.risk if fc else [],
            "alerts": self.active_alerts(state.patient_id),
        }

    def twin_of(self, state: TwinState) -> Twin:
        fc = self.forecast(state)
        return Twin(
            **self._summary_fields(state, fc),
            news2_points=dict(state.news2_points),
            news2_missing=list(state.news2_missing),
            qsofa_points=dict(state.qsofa_points),
            spo2_scale=state.spo2_scale,
            on_oxygen=state.on_oxygen,
            labs=labs_of(state),
            medications=medications_of(state),
            conditions=sorted(state.comorbidities),
            forecast=fc,
            late_events=state.late_count,
            artifacts=state.artifact_count,
        )

    def page_of(
        self,
        rows: Iterable[RiskRow],
        load: Callable[[str], TwinState | None],
        limit: int,
        offset: int,
        ward: str | None,
    ) -> Page[PatientSummary]:
        """Sort every patient by risk from its row; build tiles for the page only."""
        keyed = []
        for row in rows:
            if ward is not None and row.ward != ward:
                continue
            fc = self.forecast_at(row.patient_id, row.watermark_ms)
            risk = max((r.probability for r in fc.risk), default=-1.0) if fc else -1.0
            keyed.append(
                (
                    (-BAND_RANK.get(row.news2_band, 0), -row.news2_total, -risk, row.patient_id),
                    row.patient_id,
                )
            )
        keyed.sort()
        items = []
        for _, pid in keyed[offset : offset + limit]:
            state = load(pid)
            if state is not None:  # gone between the two reads (Kafka tombstone): skip it
                items.append(self.summarise(state))
        return Page[PatientSummary](items=items, total=len(keyed), limit=limit, offset=offset)


def store_forecasts(store: SqliteStore) -> ForecastLookup:
    """Latest ``forecast`` effect of a patient from the embedded store."""

    def lookup(patient_id: str) -> Mapping[str, Any] | None:
        found = store.effects(patient_id, FORECAST_EFFECT_KIND)
        return found[-1] if found else None

    return lookup


class EmbeddedView(StateViewBase):
    """Reads the embedded runtime's SQLite store (safe while the runtime writes: WAL)."""

    def __init__(
        self,
        store: SqliteStore,
        alerts: AlertStore | None = None,
        forecasts: ForecastLookup | None = None,
    ) -> None:
        super().__init__(alerts, forecasts if forecasts is not None else store_forecasts(store))
        self.store = store

    def ready(self) -> bool:
        return True

    def patients_by_risk(
        self, limit: int, offset: int, ward: str | None = None
    ) -> Page[PatientSummary]:
        rows = [
            RiskRow(
                r["patient_id"], r["news2_band"], r["news2_total"], r["watermark_ms"], r["ward"]
            )
            for r in self.store.patients_by_risk(limit=1 << 31, offset=0)
        ]
        return self.page_of(rows, self.store.state, limit, offset, ward)

    def twin(self, patient_id: str) -> Twin | None:
        state = self.store.state(patient_id)
        return None if state is None else self.twin_of(state)

    def history(
        self, patient_id: str, signal: Signal, start_ms: int, end_ms: int, limit: int, offset: int
    ) -> History | None:
        if self.store.state(patient_id) is None:
            return None
        points = self.store.history(patient_id, signal.value, start_ms, end_ms)
        return History(
            patient_id=patient_id,
            signal=signal.value,
            unit=SIGNALS[signal].unit,
            start_ms=start_ms,
            end_ms=end_ms,
            binned=False,
            points=[
                HistoryPoint(t_ms=p.t_ms, value=p.value) for p in points[offset : offset + limit]
            ],
            total=len(points),
            limit=limit,
            offset=offset,
        )

    def close(self) -> None:
        """The stores belong to whoever opened them."""
