"""The batch output: a directory of parquet tables plus a manifest.

Tables (one row group per simulated block; timestamps are UTC, millisecond precision):

``samples.parquet``  every device sample sent: patient_id, signal (twin signal name), device,
    observed_at, received_at, value (canonical UCUM unit), flagged (the device marked it an
    artifact), artifact (ground truth: none, motion, contact, impossible), redelivered_at (a
    second delivery of the same sample, or null). Within a block, rows are ordered by signal,
    patient and time.
``ehr.parquet``      EHR events: patient_id, kind, resource_type, code (LOINC, ICD-10-CM or
    ATC), observed_at (labs: collection), issued_at (labs), received_at, value, unit, and
    resource: the FHIR R4 JSON (when written with ``fhir=True``).
``patients.parquet`` one row per patient: index, setting, age, sex, birth_date, comorbidities,
    baselines, discharged_at, died_at, monitoring_end, outcome (worst over its episodes).
``labels.parquet``   ground truth, one row per episode that began: condition, variant,
    onset_at, apparent_at (burden 0.5), recognized_at, treated_at, critical_at, resolved_at,
    died_at, outcome, severity (plateau K), speed (k, 1/h), peak burden.
``interventions.parquet`` every dose given: patient_id, drug, at, dose, unit, source
    (schedule, policy, usual_care).
``manifest.json``    the configuration, the schema version and row counts.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from simulators.cohort import COMORBIDITIES, SETTINGS
from simulators.conditions import CONDITION_ORDER
from simulators.config import SimulationConfig
from simulators.devices import Artifact, Device
from simulators.ehr import DIAGNOSES, EhrKind
from simulators.engine import ChunkResult
from simulators.errors import ConfigError
from simulators.fhir import birth_date
from simulators.interventions import DRUG_ORDER, DRUGS, SOURCES
from simulators.labs import LABS
from simulators.records import PatientRecords
from simulators.truth import OUTCOME_ORDER, episode_outcomes, patient_outcomes
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

SCHEMA_VERSION = 1
TABLES = ("samples", "ehr", "patients", "labels", "interventions")
_TS = pa.timestamp("ms", tz="UTC")
_DICT = pa.dictionary(pa.int32(), pa.string())
_SIGNALS = [s.value for s in Signal]
_ARTIFACTS = [a.name.lower() for a in Artifact]
_DEVICES = [d.value for d in Device]
_RESOURCE = {
    EhrKind.PATIENT: "Patient",
    EhrKind.ADMIT: "Encounter",
    EhrKind.DISCHARGE: "Encounter",
    EhrKind.CONDITION: "Condition",
    EhrKind.OXYGEN_TARGET: "Goal",
    EhrKind.LAB: "Observation",
    EhrKind.CONSCIOUSNESS: "Observation",
    EhrKind.OXYGEN_FLOW: "Observation",
    EhrKind.MED_ORDER: "MedicationRequest",
    EhrKind.MED_GIVEN: "MedicationAdministration",
    EhrKind.MED_STOP: "MedicationRequest",
}

SCHEMAS: dict[str, pa.Schema] = {
    "samples": pa.schema(
        [
            ("patient_id", _DICT),
            ("signal", _DICT),
            ("device", _DICT),
            ("observed_at", _TS),
            ("received_at", _TS),
            ("value", pa.float32()),
            ("flagged", pa.bool_()),
            ("artifact", _DICT),
            ("redelivered_at", _TS),
        ]
    ),
    "ehr": pa.schema(
        [
            ("patient_id", _DICT),
            ("kind", _DICT),
            ("resource_type", _DICT),
            ("code", _DICT),
            ("observed_at", _TS),
            ("issued_at", _TS),
            ("received_at", _TS),
            ("value", pa.float64()),
            ("unit", _DICT),
            ("resource", pa.string()),
        ]
    ),
    "patients": pa.schema(
        [
            ("patient_id", pa.string()),
            ("index", pa.int64()),
            ("setting", pa.string()),
            ("age", pa.int16()),
            ("sex", pa.string()),
            ("birth_date", pa.date32()),
            *[(c, pa.bool_()) for c in COMORBIDITIES],
            ("hypercapnic", pa.bool_()),
            *[
                (f"baseline_{b}", pa.float32())
                for b in ("hr", "rr", "spo2", "temp", "sbp", "dbp", "glucose")
            ],
            ("steps_per_day", pa.float32()),
            ("discharged_at", _TS),
            ("died_at", _TS),
            ("monitoring_end", _TS),
            ("outcome", pa.string()),
        ]
    ),
    "labels": pa.schema(
        [
            ("patient_id", pa.string()),
            ("condition", pa.string()),
            ("variant", pa.bool_()),
            *[
                (f"{m}_at", _TS)
                for m in (
                    "onset",
                    "apparent",
                    "recognized",
                    "treated",
                    "critical",
                    "resolved",
                    "died",
                )
            ],
            ("outcome", pa.string()),
            ("severity", pa.float64()),
            ("speed", pa.float64()),
            ("peak", pa.float64()),
        ]
    ),
    "interventions": pa.schema(
        [
            ("patient_id", pa.string()),
            ("drug", pa.string()),
            ("at", _TS),
            ("dose", pa.float64()),
            ("unit", pa.string()),
            ("source", pa.string()),
        ]
    ),
}


def _dict(indices: npt.ArrayLike, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(indices, np.int32)), pa.array(values))


def _ts(ms: npt.NDArray[np.int64] | npt.NDArray[np.float64], start_ms: int) -> pa.Array:
    """Timestamps from ms (int) or minutes (float, NaN = null) after the start."""
    arr = np.asarray(ms)
    if arr.dtype.kind == "f":
        mask = np.isnan(arr)
        vals = np.where(mask, 0, np.round(arr * 60_000)).astype(np.int64) + start_ms
        return pa.array(vals, type=_TS, mask=mask)
    return pa.array(arr.astype(np.int64) + start_ms, type=_TS)


def samples_table(chunk: ChunkResult) -> pa.Table:
    """The block's samples, ordered by signal, then patient, then time (no sort needed: each
    channel's arrays are patient-major and time-ordered)."""
    start_ms = chunk.config.start_ms
    patient_ids = pa.array(chunk.patient_ids)
    signals, devices, artifacts = pa.array(_SIGNALS), pa.array(_DEVICES), pa.array(_ARTIFACTS)
    parts: list[pa.Table] = []
    for ch in chunk.channels.values():
        sent = ch.sent
        counts = sent.sum(axis=1)
        n = int(counts.sum())
        row = np.repeat(ch.cols, counts).astype(np.int32)
        observed = np.broadcast_to(ch.minute, sent.shape)[sent].astype(np.int64) * 60_000 + start_ms
        redeliver = np.full(sent.shape, -1, np.int64)
        redeliver[ch.dup_idx] = ch.dup_delay_ms
        red = redeliver[sent]
        red_mask = red < 0
        const = np.zeros(n, np.int32)

        def dictionary(indices: npt.NDArray[np.int32], values: pa.Array) -> pa.DictionaryArray:
            return pa.DictionaryArray.from_arrays(pa.array(indices), values)

        parts.append(
            pa.table(
                {
                    "patient_id": dictionary(row, patient_ids),
                    "signal": dictionary(const + _SIGNALS.index(ch.signal.value), signals),
                    "device": dictionary(const + _DEVICES.index(ch.device.value), devices),
                    "observed_at": pa.array(observed, type=_TS),
                    "received_at": pa.array(observed + ch.delay_ms[sent], type=_TS),
                    "value": pa.array(ch.value[sent]),
                    "flagged": pa.array(ch.flagged[sent]),
                    "artifact": dictionary(ch.artifact[sent].astype(np.int32), artifacts),
                    "redelivered_at": pa.array(
                        np.where(red_mask, 0, observed + red), type=_TS, mask=red_mask
                    ),
                },
                schema=SCHEMAS["samples"],
            )
        )
    return pa.concat_tables(parts)


def _ehr_code_unit(kind: EhrKind, code: int) -> tuple[str, str]:
    if kind is EhrKind.LAB:
        return LABS[code].loinc, LABS[code].unit
    if kind is EhrKind.CONDITION:
        return DIAGNOSES[code].icd10, ""
    if kind is EhrKind.CONSCIOUSNESS:
        return SIGNAL_TO_LOINC[Signal.CONSCIOUSNESS], SIGNALS[Signal.CONSCIOUSNESS].unit
    if kind is EhrKind.OXYGEN_FLOW:
        return SIGNAL_TO_LOINC[Signal.O2_FLOW], "L/min"
    if kind in (EhrKind.MED_ORDER, EhrKind.MED_GIVEN, EhrKind.MED_STOP):
        spec = DRUGS[DRUG_ORDER[code]]
        return spec.atc, spec.unit
    return "", ""


def ehr_table(chunk: ChunkResult, *, fhir: bool = False) -> pa.Table:
    ehr = chunk.ehr
    if ehr is None:
        raise ConfigError("this chunk was simulated without signals")
    start_ms = chunk.config.start_ms
    kinds = [k.name.lower() for k in EhrKind]
    pairs = sorted({(int(k), int(c)) for k, c in zip(ehr.kind, ehr.code, strict=True)})
    code_of = {p: _ehr_code_unit(EhrKind(p[0]), p[1]) for p in pairs}
    codes = sorted({v[0] for v in code_of.values()})
    units = sorted({v[1] for v in code_of.values()})
    code_idx = [
        codes.index(code_of[(int(k), int(c))][0]) for k, c in zip(ehr.kind, ehr.code, strict=True)
    ]
    unit_idx = [
        units.index(code_of[(int(k), int(c))][1]) for k, c in zip(ehr.kind, ehr.code, strict=True)
    ]
    resources: list[str | None] = [None] * ehr.n
    if fhir:
        for col in range(chunk.cohort.n):
            view = PatientRecords(chunk, col)
            lo, hi = np.searchsorted(ehr.row, [col, col + 1])
            for i in range(int(lo), int(hi)):
                payload, _ = view.ehr_resource(i)
                resources[i] = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    types = sorted(set(_RESOURCE.values()))
    return pa.table(
        {
            "patient_id": _dict(ehr.row, chunk.patient_ids),
            "kind": _dict(ehr.kind, kinds),
            "resource_type": _dict(
                [types.index(_RESOURCE[EhrKind(int(k))]) for k in ehr.kind], types
            ),
            "code": _dict(code_idx, codes),
            "observed_at": _ts(ehr.minute, start_ms),
            "issued_at": _ts(ehr.issued_min, start_ms),
            "received_at": _ts(ehr.received_ms, start_ms),
            "value": pa.array(ehr.value),
            "unit": _dict(unit_idx, units),
            "resource": pa.array(resources, pa.string()),
        },
        schema=SCHEMAS["ehr"],
    )


def patients_table(chunk: ChunkResult) -> pa.Table:
    c = chunk.cohort
    lat = chunk.latent
    cfg = chunk.config
    start_ms = cfg.start_ms
    outcome = patient_outcomes(c.n, chunk.episodes, lat)
    cols: dict[str, Any] = {
        "patient_id": chunk.patient_ids,
        "index": c.index,
        "setting": [SETTINGS[int(s)] for s in c.setting],
        "age": c.age.astype(np.int16),
        "sex": np.where(c.female, "female", "male").tolist(),
        "birth_date": [birth_date(cfg.start, int(d)) for d in c.birth_days_before_start],
        **{name: getattr(c, name) for name in COMORBIDITIES},
        "hypercapnic": c.hypercapnic,
        "baseline_hr": c.hr0,
        "baseline_rr": c.rr0,
        "baseline_spo2": c.spo2_0,
        "baseline_temp": c.temp0,
        "baseline_sbp": c.sbp0,
        "baseline_dbp": c.dbp0,
        "baseline_glucose": c.glucose0,
        "steps_per_day": c.steps_per_day,
        "discharged_at": _ts(lat.discharge_min, start_ms),
        "died_at": _ts(lat.death_min, start_ms),
        "monitoring_end": _ts(lat.end_min(cfg.minutes), start_ms),
        "outcome": [OUTCOME_ORDER[int(o)].value for o in outcome],
    }
    cols = {
        k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
        for k, v in cols.items()
    }
    return pa.table(cols, schema=SCHEMAS["patients"])


def labels_table(chunk: ChunkResult) -> pa.Table:
    ep, lat = chunk.episodes, chunk.latent
    start_ms = chunk.config.start_ms
    keep = np.nonzero(lat.started)[0]
    ids = chunk.patient_ids
    outcome = episode_outcomes(ep, lat)
    death = lat.death_min[ep.row]
    died = np.where(death >= ep.onset_min, death, np.nan)
    return pa.table(
        {
            "patient_id": [ids[int(r)] for r in ep.row[keep]],
            "condition": [CONDITION_ORDER[int(c)].value for c in ep.condition[keep]],
            "variant": ep.variant[keep],
            "onset_at": _ts(ep.onset_min[keep].astype(np.float64), start_ms),
            "apparent_at": _ts(lat.apparent_min[keep], start_ms),
            "recognized_at": _ts(lat.recognized_min[keep], start_ms),
            "treated_at": _ts(lat.treated_min[keep], start_ms),
            "critical_at": _ts(lat.critical_min[keep], start_ms),
            "resolved_at": _ts(lat.resolved_min[keep], start_ms),
            "died_at": _ts(died[keep], start_ms),
            "outcome": [OUTCOME_ORDER[int(o)].value for o in outcome[keep]],
            "severity": ep.severity[keep],
            "speed": ep.speed[keep],
            "peak": lat.peak[keep],
        },
        schema=SCHEMAS["labels"],
    )


def interventions_table(chunk: ChunkResult) -> pa.Table:
    d = chunk.latent.doses
    ids = chunk.patient_ids
    return pa.table(
        {
            "patient_id": [ids[int(r)] for r in d.row],
            "drug": [DRUG_ORDER[int(k)].value for k in d.drug],
            "at": _ts(d.minute, chunk.config.start_ms),
            "dose": d.dose,
            "unit": [DRUGS[DRUG_ORDER[int(k)]].unit for k in d.drug],
            "source": [SOURCES[int(s)] for s in d.source],
        },
        schema=SCHEMAS["interventions"],
    )


class DatasetWriter:
    """Writes chunks into ``path`` (a directory) as they are simulated; use as a context."""

    def __init__(self, path: str | Path, config: SimulationConfig, *, fhir: bool = False) -> None:
        self.path = Path(path)
        self.config = config
        self.fhir = fhir
        self.path.mkdir(parents=True, exist_ok=True)
        self._writers = {
            name: pq.ParquetWriter(self.path / f"{name}.parquet", SCHEMAS[name], compression="zstd")
            for name in TABLES
        }
        self.rows = dict.fromkeys(TABLES, 0)

    def write(self, chunk: ChunkResult) -> None:
        tables = {
            "samples": samples_table(chunk),
            "ehr": ehr_table(chunk, fhir=self.fhir),
            "patients": patients_table(chunk),
            "labels": labels_table(chunk),
            "interventions": interventions_table(chunk),
        }
        for name, table in tables.items():
            self._writers[name].write_table(table)
            self.rows[name] += table.num_rows

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "config": self.config.to_json(),
            "rows": self.rows,
            "files": {name: f"{name}.parquet" for name in TABLES},
            "max_lateness_s": self.config.devices.max_lateness() / timedelta(seconds=1),
        }
        (self.path / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_table(path: str | Path, name: str, *, patient_id: str | None = None) -> pa.Table:
    """One table of a dataset, optionally only one patient's rows."""
    if name not in TABLES:
        raise ConfigError(f"unknown table {name!r}; tables: {TABLES}")
    file = Path(path) / f"{name}.parquet"
    if not file.exists():
        raise ConfigError(f"{file} does not exist (not a simulator dataset?)")
    filters = [("patient_id", "=", patient_id)] if patient_id is not None else None
    return pq.read_table(file, filters=filters)


def read_manifest(path: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(path) / "manifest.json").read_text())
    return data
