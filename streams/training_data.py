"""Simulator output -> the models dataset schema (``models.schema``): the training adapter.

``models`` never imports ``simulators``; this adapter does the translation the twin would do
on the stream, so a model trains on what a twin sees:

- device samples: kept unless the device flagged them (the twin drops flagged readings; it
  drops implausible ones too, which ``models.schema.validate`` does). Redeliveries are one
  sample (the batch output lists each sample once).
- EHR: labs become samples with ``available_ms`` = their delivery time (a forecast cannot use a
  result before it arrives); ACVPU assessments and oxygen flow become ``consciousness`` and
  ``o2_flow`` samples; medication orders, administrations and stops become treatments by the
  twin's medication class (oxygen is charted as oxygen flow, not as a drug).
- patients: age, sex and comorbidities (``hypercapnic`` is the NEWS2 scale-2 diagnosis).
- labels: one row per episode that began, with its critical-event time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from models.schema import COMORBIDITIES, Dataset, validate
from simulators.config import SimulationConfig
from simulators.dataset import DatasetWriter
from simulators.engine import simulate
from simulators.interventions import DRUGS
from twin.signals import LOINC_TO_SIGNAL

_ACTIONS = {"med_order": "ordered", "med_given": "administered", "med_stop": "stopped"}
_MED_CLASS = {
    spec.atc: spec.medication_class.value for spec in DRUGS.values() if spec.medication_class
}


def _ms(col: pd.Series) -> pd.Series:
    return col.astype("datetime64[ms, UTC]").astype("int64")


def from_simulator_batch(directory: str | Path) -> Dataset:
    """Read a simulator batch output directory (``simulators.dataset``) as a ``Dataset``."""
    root = Path(directory)
    raw = pd.read_parquet(
        root / "samples.parquet",
        columns=["patient_id", "signal", "observed_at", "value", "flagged"],
    )
    raw = raw[~raw["flagged"].to_numpy()]
    samples = pd.DataFrame(
        {
            "patient_id": raw["patient_id"].astype(str).to_numpy(),
            "t_ms": _ms(raw["observed_at"]).to_numpy(),
            "signal": raw["signal"].astype(str).to_numpy(),
            "value": raw["value"].astype("float64").to_numpy(),
        }
    )
    samples["available_ms"] = pd.array(samples["t_ms"].to_numpy(), dtype="Int64")
    ehr = pd.read_parquet(root / "ehr.parquet")
    kind = ehr["kind"].astype(str)
    parts = [samples]
    lab = ehr[kind == "lab"]
    lab_sig = lab["code"].astype(str).map({k: v.value for k, v in LOINC_TO_SIGNAL.items()})
    parts.append(
        pd.DataFrame(
            {
                "patient_id": lab["patient_id"].astype(str).to_numpy(),
                "t_ms": _ms(lab["observed_at"]).to_numpy(),
                "signal": lab_sig.to_numpy(),
                "value": lab["value"].to_numpy(),
                "available_ms": pd.array(_ms(lab["received_at"]).to_numpy(), dtype="Int64"),
            }
        )
    )
    for k, signal in (("consciousness", "consciousness"), ("oxygen_flow", "o2_flow")):
        part = ehr[kind == k]
        parts.append(
            pd.DataFrame(
                {
                    "patient_id": part["patient_id"].astype(str).to_numpy(),
                    "t_ms": _ms(part["observed_at"]).to_numpy(),
                    "signal": signal,
                    "value": part["value"].to_numpy(),
                    "available_ms": pd.array(_ms(part["received_at"]).to_numpy(), dtype="Int64"),
                }
            )
        )
    meds = ehr[kind.isin(list(_ACTIONS))]
    med_class = meds["code"].astype(str).map(_MED_CLASS)
    meds, med_class = meds[med_class.notna().to_numpy()], med_class[med_class.notna()]
    treatments = pd.DataFrame(
        {
            "patient_id": meds["patient_id"].astype(str).to_numpy(),
            "t_ms": _ms(meds["observed_at"]).to_numpy(),
            "medication": med_class.to_numpy(),
            "action": meds["kind"].astype(str).map(_ACTIONS).to_numpy(),
        }
    )
    pat = pd.read_parquet(root / "patients.parquet")
    static = pd.DataFrame(
        {"patient_id": pat["patient_id"].astype(str), "age": pat["age"], "sex": pat["sex"]}
    )
    for c in COMORBIDITIES:
        src = "hypercapnic" if c == "hypercapnic_respiratory_failure" else c
        static[c] = pat[src].astype(bool).to_numpy()
    lab_t = pd.read_parquet(root / "labels.parquet")
    crit = lab_t["critical_at"]
    labels = pd.DataFrame(
        {
            "patient_id": lab_t["patient_id"].astype(str),
            "condition": lab_t["condition"].astype(str),
            "onset_ms": _ms(lab_t["onset_at"]),
            "critical_event_ms": pd.array(
                [None if pd.isna(v) else int(pd.Timestamp(v).value // 1_000_000) for v in crit],
                dtype="Int64",
            ),
            "outcome": lab_t["outcome"].astype(str),
        }
    )
    return validate(pd.concat(parts, ignore_index=True), static, treatments, labels)


def simulate_dataset(
    patients: int,
    days: float,
    seed: int,
    *,
    risk: Mapping[str, float] | None = None,
    home_fraction: float = 0.3,
    keep: str | Path | None = None,
) -> tuple[Dataset, dict[str, Any]]:
    """Simulate a cohort into a batch directory (``keep`` or a temporary one) and read it."""
    config = SimulationConfig(
        patients=patients, days=days, seed=seed, risk=dict(risk or {}), home_fraction=home_fraction
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep) if keep is not None else Path(tmp)
        with DatasetWriter(out, config) as writer:
            for chunk in simulate(config):
                writer.write(chunk)
        return from_simulator_batch(out), {"simulator": config.to_json()}
