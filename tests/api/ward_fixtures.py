"""A small synthetic ward for the API and browser tests: six patients, one record per minute.

Deterministic (no randomness, no clock): profiles are functions of the minute, chosen so that
the ward spans every NEWS2 band and some patients cross thresholds while a test watches.
Imported by tests/api and tests/dashboards (their conftests put this directory on sys.path).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.alert_stage import AlertStage
from streams.alert_store import AlertStore
from streams.embedded import EmbeddedRuntime
from streams.ingress import Ingress, SourceKind
from streams.pipeline import Pipeline, Record
from streams.pseudonym import Pseudonymiser, PseudonymStore
from streams.sqlite_store import SqliteStore

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
CODES = {  # signal -> (LOINC, unit)
    "hr": ("8867-4", "/min"),
    "rr": ("9279-1", "/min"),
    "spo2": ("59408-5", "%"),
    "temp": ("8310-5", "Cel"),
    "sbp": ("8480-6", "mm[Hg]"),
}


def _ramp(start: float, end: float, minute: int, over: int) -> float:
    return start + (end - start) * min(minute / over, 1.0)


def stable(m: int) -> dict[str, float]:
    return {"hr": 72 + 3 * math.sin(m / 7), "rr": 14, "spo2": 97, "temp": 36.8, "sbp": 124}


def watch(m: int) -> dict[str, float]:
    return {"hr": 96 + 2 * math.sin(m / 5), "rr": 21, "spo2": 95, "temp": 37.6, "sbp": 108}


def deteriorating(m: int) -> dict[str, float]:
    return {
        "hr": _ramp(78, 128, m, 40) + 2 * math.sin(m / 3),
        "rr": _ramp(15, 27, m, 40),
        "spo2": _ramp(97, 90, m, 40),
        "temp": _ramp(37.0, 39.3, m, 40),
        "sbp": _ramp(126, 94, m, 40),
    }


def septic(m: int) -> dict[str, float]:
    return {"hr": 124 + 4 * math.sin(m / 4), "rr": 26, "spo2": 91, "temp": 39.2, "sbp": 89}


def mild(m: int) -> dict[str, float]:
    return {"hr": 88 + 2 * math.cos(m / 6), "rr": 21, "spo2": 96, "temp": 38.3, "sbp": 118}


def recovering(m: int) -> dict[str, float]:
    return {
        "hr": _ramp(112, 84, m, 60),
        "rr": _ramp(23, 17, m, 60),
        "spo2": _ramp(93, 96, m, 60),
        "temp": _ramp(38.6, 37.4, m, 60),
        "sbp": _ramp(102, 118, m, 60),
    }


PATIENTS: dict[str, Callable[[int], dict[str, float]]] = {
    "MRN-1001": stable,
    "MRN-1002": watch,
    "MRN-1003": deteriorating,
    "MRN-1004": septic,
    "MRN-1005": mild,
    "MRN-1006": recovering,
}


def _lab(mrn: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "type": "lab",
        "patient_id": mrn,
        "code": code,
        "value": value,
        "unit": unit,
        "source": "lis",
    }


def _antibiotic(mrn: str) -> dict[str, Any]:
    return {
        "type": "medication",
        "patient_id": mrn,
        "medication": "antibiotic",
        "action": "administered",
        "code": "J01CR05",
        "source": "emar",
    }


# Labs and medication on the timeline: (patient, minute) -> extra items of that minute.
EXTRAS: dict[tuple[str, int], list[dict[str, Any]]] = {
    ("MRN-1004", 12): [
        _lab("MRN-1004", "2524-7", 3.8, "mmol/L"),
        _lab("MRN-1004", "1988-5", 142.0, "mg/L"),
    ],
    ("MRN-1004", 20): [_antibiotic("MRN-1004")],
    ("MRN-1004", 70): [_lab("MRN-1004", "2524-7", 2.9, "mmol/L")],
    ("MRN-1003", 35): [_lab("MRN-1003", "2524-7", 2.4, "mmol/L")],
    ("MRN-1003", 50): [_antibiotic("MRN-1003")],
}


def minute_record(mrn: str, minute: int, start: datetime = T0) -> dict[str, Any]:
    at = start + timedelta(minutes=minute)
    values = PATIENTS[mrn](minute)
    samples: list[dict[str, Any]] = [
        {
            "patient_id": mrn,
            "device_id": f"SN-{mrn[-4:]}",
            "observed_at": at.isoformat(),
            "code": CODES[k][0],
            "value": round(v, 1),
            "unit": CODES[k][1],
            "source": "watch",
        }
        for k, v in values.items()
    ]
    if minute % 30 == 0:  # the charted observation set: consciousness and room air
        samples.append(
            {
                "type": "consciousness",
                "patient_id": mrn,
                "observed_at": at.isoformat(),
                "level": "A",
                "source": "chart",
            }
        )
        samples.append(
            {
                "type": "oxygen",
                "patient_id": mrn,
                "observed_at": at.isoformat(),
                "on": False,
                "source": "chart",
            }
        )
    for extra in EXTRAS.get((mrn, minute), []):
        samples.append({**extra, "observed_at": at.isoformat()})
    return {"samples": samples}


@dataclass
class WardSource:
    """``minutes`` minutes of the six patients, delivered 5 s after observation."""

    minutes: int
    start: datetime = T0
    first_minute: int = 0
    name: str = "synthetic-ward"

    def records(self, resume_after: str | None) -> Iterator[tuple[str, Record]]:
        skip = 0 if resume_after is None else int(resume_after)
        n = 0
        for minute in range(self.first_minute, self.first_minute + self.minutes):
            for mrn in PATIENTS:
                n += 1
                if n <= skip:
                    continue
                at = self.start + timedelta(minutes=minute, seconds=5)
                yield (
                    str(n),
                    Record(
                        SourceKind.WEARABLE,
                        minute_record(mrn, minute, self.start),
                        at,
                        source=self.name,
                        position=str(n),
                    ),
                )


@dataclass
class Ward:
    store: SqliteStore
    alerts: AlertStore
    pseudonyms: PseudonymStore
    pipeline: Pipeline
    stage: AlertStage

    def token(self, mrn: str) -> str:
        return self.pseudonyms.token_for("patient", mrn)

    def runtime(
        self,
        source: Any,
        *,
        speed: float = 0.0,
        hooks: list[Any] | None = None,
        batch_size: int = len(PATIENTS),
    ) -> EmbeddedRuntime:
        # One simulated minute per batch by default: the alert stage evaluates every minute,
        # as it would with a live feed, so pending alerts get to fire.
        return EmbeddedRuntime(
            self.pipeline,
            self.store,
            source,
            on_batch=[self.stage.on_batch, *(hooks or [])],
            speed=speed,
            batch_size=batch_size,
        )

    def close(self) -> None:
        self.store.close()
        self.alerts.close()
        self.pseudonyms.close()


def make_ward(tmp: Path) -> Ward:
    store = SqliteStore(tmp / "vitaltwin.db")
    alerts = AlertStore(tmp / "alerts.db")
    pseudonyms = PseudonymStore(tmp / "pseudonyms.db")
    pipeline = Pipeline(Ingress(Pseudonymiser(pseudonyms)))
    return Ward(store, alerts, pseudonyms, pipeline, AlertStage(store, alerts))


def fill(ward: Ward, minutes: int) -> None:
    """Run the real embedded runtime (and alert stage) over ``minutes`` minutes, unpaced."""
    ward.runtime(WardSource(minutes)).run()


def stub_forecasts(store: SqliteStore) -> Callable[[str], dict[str, Any] | None]:
    """A stand-in forecaster's records (model "test-stub"), derived from the twin itself, so
    the tests can exercise the forecast rendering before a trained model is wired in."""

    def lookup(patient_id: str) -> dict[str, Any] | None:
        st = store.state(patient_id)
        if st is None or st.watermark_ms < 0:
            return None
        base = min(0.04 + 0.055 * st.news2_total, 0.9)
        risk = {h: round(min(base * (0.5 + h / 16), 0.97), 3) for h in (1, 4, 8, 12, 24)}
        quantiles: dict[str, list[dict[str, Any]]] = {}
        for signal, reading in st.latest.items():
            if signal.value not in (
                "heart_rate",
                "respiratory_rate",
                "spo2",
                "systolic_bp",
                "temperature",
            ):
                continue
            value, scale = reading[2], {"temperature": 0.15, "spo2": 0.8}.get(signal.value, 2.0)
            quantiles[signal.value] = [
                {
                    "horizon_min": m,
                    "p10": value - 1.3 * scale * (m / 30) ** 0.5,
                    "p25": value - 0.7 * scale * (m / 30) ** 0.5,
                    "p50": value,
                    "p75": value + 0.7 * scale * (m / 30) ** 0.5,
                    "p90": value + 1.3 * scale * (m / 30) ** 0.5,
                }
                for m in range(15, 121, 15)
            ]
        drivers = sorted(st.news2_points.items(), key=lambda kv: -kv[1])[:5]
        return {
            "made_at_ms": st.watermark_ms,
            "model": "test-stub",
            "outcome": "deterioration",
            "risk": risk,
            "quantiles": quantiles,
            "explanation": [
                {"feature": k, "weight": round(0.1 + 0.2 * v, 2), "detail": f"NEWS2 points {v}"}
                for k, v in drivers
            ],
        }

    return lookup
