"""The documented dataset schema: what ``vitaltwin train`` learns from, as four parquet tables.

A dataset is a directory holding these files (``treatments`` and ``labels`` may be absent):

``samples.parquet`` - one row per observation, canonical UCUM units (``twin.signals``)
    ========== ======= =====================================================================
    patient_id string  pseudonymous patient token
    t_ms       int64   observed time, epoch milliseconds UTC
    signal     string  a ``twin.signals.Signal`` value: the windowed vitals (heart_rate,
                       respiratory_rate, spo2, temperature, systolic_bp, glucose, steps),
                       diastolic_bp, o2_flow (L/min, 0 = room air), consciousness (ACVPU
                       0..4), labs (lactate, wbc, creatinine, glucose_lab, crp)
    value      float64 canonical unit; implausible values are dropped as the twin drops them
    available_ms int64 optional, nullable: when the value became known (lab release). A
                       window built at time t uses a lab only if it was available by t.
    ========== ======= =====================================================================

``static.parquet`` - one row per patient
    patient_id (string), age (float64, years), sex (string: female/male/other/unknown) and one
    bool column per comorbidity in ``COMORBIDITIES`` (a missing column means "absent").

``treatments.parquet`` - medication events (optional)
    patient_id, t_ms (int64), medication (``twin.events.MedicationClass`` value), action
    (ordered / administered / stopped). A class is active from its last non-"stopped" action,
    the same rule as ``TwinState.active_medications``.

``labels.parquet`` - ground truth per acute episode (optional; zero rows = nothing happened)
    patient_id, condition (string), onset_ms (int64), critical_event_ms (int64, nullable: the
    episode never became critical), outcome (string, nullable).

``load_dataset`` reads a directory, ``validate`` checks a ``Dataset`` built in memory; both raise
``SchemaError`` naming the table, the column and what is wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import SchemaError
from twin.events import MedicationAction, MedicationClass
from twin.signals import SIGNALS, Signal

COMORBIDITIES: tuple[str, ...] = (
    "heart_failure",
    "copd",
    "type1_diabetes",
    "type2_diabetes",
    "ckd",
    "hypertension",
    "hypercapnic_respiratory_failure",
)
SEXES: tuple[str, ...] = ("female", "male", "other", "unknown")
SIGNAL_NAMES: frozenset[str] = frozenset(s.value for s in Signal)
MEDICATIONS: frozenset[str] = frozenset(m.value for m in MedicationClass)
ACTIONS: frozenset[str] = frozenset(a.value for a in MedicationAction)

TABLES: dict[str, dict[str, str]] = {
    "samples": {"patient_id": "string", "t_ms": "int64", "signal": "string", "value": "float64"},
    "static": {"patient_id": "string", "age": "float64", "sex": "string"},
    "treatments": {
        "patient_id": "string",
        "t_ms": "int64",
        "medication": "string",
        "action": "string",
    },
    "labels": {
        "patient_id": "string",
        "condition": "string",
        "onset_ms": "int64",
        "critical_event_ms": "Int64",
    },
}


@dataclass(frozen=True)
class Dataset:
    """The four tables, validated and in canonical column types (see the module docstring)."""

    samples: pd.DataFrame
    static: pd.DataFrame
    treatments: pd.DataFrame
    labels: pd.DataFrame

    @property
    def patient_ids(self) -> list[str]:
        return [str(p) for p in self.static["patient_id"]]

    def subset(self, patient_ids: list[str] | set[str]) -> Dataset:
        keep = set(patient_ids)
        return Dataset(
            *(
                t[t["patient_id"].isin(keep)].reset_index(drop=True)
                for t in (self.samples, self.static, self.treatments, self.labels)
            )
        )

    def fingerprint(self) -> str:
        """A content hash of the four tables (row order does not matter)."""
        h = hashlib.blake2b(digest_size=16)
        for name, table in self._tables().items():
            keys = [c for c in TABLES[name] if c in table.columns]
            ordered = table.sort_values(keys, kind="mergesort").reset_index(drop=True)
            ordered = ordered[sorted(ordered.columns)]
            h.update(name.encode())
            h.update(",".join(ordered.columns).encode())
            h.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
        return h.hexdigest()

    def _tables(self) -> dict[str, pd.DataFrame]:
        return {
            "samples": self.samples,
            "static": self.static,
            "treatments": self.treatments,
            "labels": self.labels,
        }

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in self._tables().items():
            table.to_parquet(out / f"{name}.parquet", index=False)
        return out


def empty_table(name: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in TABLES[name].items()})


def load_dataset(directory: str | Path) -> Dataset:
    """Read and validate a dataset directory (see the module docstring)."""
    root = Path(directory)
    if not root.is_dir():
        raise SchemaError(f"dataset directory {root} does not exist")
    tables: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        path = root / f"{name}.parquet"
        if path.exists():
            tables[name] = pd.read_parquet(path)
        elif name in ("samples", "static"):
            raise SchemaError(f"{path} is missing: a dataset needs samples and static tables")
        else:
            tables[name] = empty_table(name)
    return validate(**tables)


def validate(
    samples: pd.DataFrame,
    static: pd.DataFrame,
    treatments: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
) -> Dataset:
    """Check every table and return a ``Dataset`` in canonical types (inputs are not changed)."""
    treatments = empty_table("treatments") if treatments is None else treatments
    labels = empty_table("labels") if labels is None else labels
    static = _static(static)
    known = set(static["patient_id"])
    samples = _samples(samples, known)
    treatments = _treatments(treatments, known)
    labels = _labels(labels, known)
    return Dataset(samples, static, treatments, labels)


def _require(table: str, frame: pd.DataFrame, columns: dict[str, str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{table}: missing column(s) {missing}; expected {list(columns)}")


def _ints(table: str, frame: pd.DataFrame, column: str, nullable: bool = False) -> pd.Series:
    col = frame[column]
    if not nullable and col.isna().any():
        raise SchemaError(f"{table}.{column}: {int(col.isna().sum())} missing value(s)")
    try:
        out = col.astype("Int64") if nullable else col.astype("int64")
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{table}.{column}: not integer epoch milliseconds ({exc})") from None
    return out


def _patients(table: str, frame: pd.DataFrame, known: set[str]) -> pd.Series:
    ids = frame["patient_id"].astype(str)
    unknown = set(ids.unique()) - known
    if unknown:
        some = sorted(unknown)[:3]
        raise SchemaError(f"{table}: {len(unknown)} patient id(s) not in static, e.g. {some}")
    return ids


def _static(frame: pd.DataFrame) -> pd.DataFrame:
    _require("static", frame, TABLES["static"])
    out = pd.DataFrame({"patient_id": frame["patient_id"].astype(str)})
    if out["patient_id"].duplicated().any():
        raise SchemaError("static: patient_id must be unique (one row per patient)")
    age = pd.to_numeric(frame["age"], errors="coerce").astype("float64")
    if (age.notna() & ((age < 0) | (age > 130))).any():
        raise SchemaError("static.age: ages must be within 0..130 years (or missing)")
    out["age"] = age.to_numpy()
    sex = frame["sex"].fillna("unknown").astype(str).str.lower()
    bad = set(sex.unique()) - set(SEXES)
    if bad:
        raise SchemaError(f"static.sex: unknown value(s) {sorted(bad)}; expected {SEXES}")
    out["sex"] = sex.to_numpy()
    for name in COMORBIDITIES:
        if name in frame.columns:
            out[name] = frame[name].fillna(False).astype(bool).to_numpy()
        else:
            out[name] = False
    return out.reset_index(drop=True)


def _samples(frame: pd.DataFrame, known: set[str]) -> pd.DataFrame:
    _require("samples", frame, TABLES["samples"])
    signal = frame["signal"].astype(str)
    bad = set(signal.unique()) - SIGNAL_NAMES
    if bad:
        raise SchemaError(
            f"samples.signal: unknown signal(s) {sorted(bad)}; expected one of "
            f"{sorted(SIGNAL_NAMES)}"
        )
    value = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    if not np.isfinite(value.to_numpy()).all():
        raise SchemaError("samples.value: every value must be a finite number")
    out = pd.DataFrame(
        {
            "patient_id": _patients("samples", frame, known).to_numpy(),
            "t_ms": _ints("samples", frame, "t_ms").to_numpy(),
            "signal": signal.to_numpy(),
            "value": value.to_numpy(),
        }
    )
    if "available_ms" in frame.columns:
        out["available_ms"] = _ints("samples", frame, "available_ms", nullable=True).to_numpy()
        late = out["available_ms"].notna() & (out["available_ms"] < out["t_ms"])
        if late.any():
            raise SchemaError("samples.available_ms: a value cannot be known before t_ms")
    # Implausible readings are artifacts: the twin never lets them reach windows or scores.
    lo = out["signal"].map({s.value: SIGNALS[s].plausible_min for s in Signal})
    hi = out["signal"].map({s.value: SIGNALS[s].plausible_max for s in Signal})
    keep = (out["value"] >= lo) & (out["value"] <= hi)
    return out[keep.to_numpy()].reset_index(drop=True)


def _treatments(frame: pd.DataFrame, known: set[str]) -> pd.DataFrame:
    _require("treatments", frame, TABLES["treatments"])
    med = frame["medication"].astype(str)
    action = frame["action"].astype(str)
    if set(med.unique()) - MEDICATIONS:
        raise SchemaError(
            f"treatments.medication: unknown {sorted(set(med.unique()) - MEDICATIONS)}; "
            f"expected {sorted(MEDICATIONS)}"
        )
    if set(action.unique()) - ACTIONS:
        raise SchemaError(
            f"treatments.action: unknown {sorted(set(action.unique()) - ACTIONS)}; expected "
            f"{sorted(ACTIONS)}"
        )
    return pd.DataFrame(
        {
            "patient_id": _patients("treatments", frame, known).to_numpy(),
            "t_ms": _ints("treatments", frame, "t_ms").to_numpy(),
            "medication": med.to_numpy(),
            "action": action.to_numpy(),
        }
    )


def _labels(frame: pd.DataFrame, known: set[str]) -> pd.DataFrame:
    _require("labels", frame, TABLES["labels"])
    out = pd.DataFrame(
        {
            "patient_id": _patients("labels", frame, known).to_numpy(),
            "condition": frame["condition"].astype(str).to_numpy(),
            "onset_ms": _ints("labels", frame, "onset_ms").to_numpy(),
            "critical_event_ms": _ints("labels", frame, "critical_event_ms", True).to_numpy(),
        }
    )
    out["outcome"] = (
        frame["outcome"].astype("string").to_numpy() if "outcome" in frame.columns else pd.NA
    )
    crit = out["critical_event_ms"]
    if (crit.notna() & (crit < out["onset_ms"])).any():
        raise SchemaError("labels.critical_event_ms: a critical event cannot precede its onset")
    return out
