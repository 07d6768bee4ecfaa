"""A small synthetic cohort in the dataset schema: test fixtures and a demo without a simulator.

Not a physiological model (that is ``simulators``): each patient has baselines, a diurnal
rhythm, AR(1) noise and, for some, one deterioration episode whose latent burden grows
logistically from its onset and moves HR, RR, SpO2, SBP and temperature; the critical event is
the burden reaching 1. Devices: a wearable (HR, SpO2, steps every minute, RR every 5 min,
temperature every 15), a cuff every 4 h (hourly once the burden is clinically apparent), a CGM
for a tenth of patients, labs daily and twice as often when apparent, ACVPU with the cuff,
oxygen when SpO2 falls below 92 %. Seeded: the same arguments give the same tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.schema import Dataset, validate

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def cohort(
    patients: int = 24,
    days: float = 2.0,
    seed: int = 0,
    *,
    episode_share: float = 0.5,
    start_ms: int = START_MS,
) -> Dataset:
    rng = np.random.default_rng(seed)
    minutes = int(days * 1440)
    ids = [f"syn{seed}-{i:04d}" for i in range(patients)]
    age = np.clip(rng.normal(70, 14, patients), 20, 98).round()
    female = rng.random(patients) < 0.5
    copd = rng.random(patients) < 0.2
    hf = rng.random(patients) < 0.2
    cgm = rng.random(patients) < 0.15
    static = pd.DataFrame(
        {
            "patient_id": ids,
            "age": age,
            "sex": np.where(female, "female", "male"),
            "heart_failure": hf,
            "copd": copd,
            "type1_diabetes": cgm,
            "type2_diabetes": False,
            "ckd": rng.random(patients) < 0.15,
            "hypertension": rng.random(patients) < 0.4,
            "hypercapnic_respiratory_failure": copd & (rng.random(patients) < 0.3),
        }
    )
    t = np.arange(minutes, dtype=np.float64)
    has_ep = rng.random(patients) < episode_share
    onset = rng.uniform(0.2, 0.8, patients) * minutes
    speed = rng.lognormal(np.log(0.35), 0.4, patients) / 60  # per minute
    severity = rng.uniform(0.8, 1.5, patients)
    x = np.clip((t[None, :] - onset[:, None]) * speed[:, None], -50, 50)
    burden = np.where(
        has_ep[:, None] & (t[None, :] >= onset[:, None]),
        severity[:, None] / (1 + (severity[:, None] / 0.05 - 1) * np.exp(-x)),
        0.0,
    )
    tod = np.sin(2 * np.pi * ((t[None, :] % 1440) / 1440 - 0.25))

    def ar1(sd: float, phi: float = 0.98) -> np.ndarray:
        e = rng.normal(0, sd * np.sqrt(1 - phi * phi), (patients, minutes))
        out = np.empty_like(e)
        out[:, 0] = rng.normal(0, sd, patients)
        for i in range(1, minutes):
            out[:, i] = phi * out[:, i - 1] + e[:, i]
        return out

    hr = rng.normal(78, 8, patients)[:, None] + 4 * tod + ar1(4) + 35 * burden
    rr = rng.normal(16, 1.5, patients)[:, None] + ar1(1.2, 0.9) + 11 * burden
    spo2 = rng.normal(96.5, 1, patients)[:, None] - 2.5 * copd[:, None] + ar1(0.8) - 6 * burden
    temp = rng.normal(36.8, 0.2, patients)[:, None] + 0.2 * tod + ar1(0.1) + 1.8 * burden
    sbp = rng.normal(130, 12, patients)[:, None] + 5 * tod + ar1(6, 0.95) - 35 * burden
    glucose = rng.normal(150, 25, patients)[:, None] + ar1(20, 0.99)
    steps = np.where(rng.random((patients, minutes)) < 0.08 * (1 - np.minimum(burden, 1)), 60, 0)

    rows: list[pd.DataFrame] = []

    def emit(signal: str, mask: np.ndarray, values: np.ndarray, decimals: int) -> None:
        p, m = np.nonzero(mask)
        rows.append(
            pd.DataFrame(
                {
                    "patient_id": np.asarray(ids)[p],
                    "t_ms": start_ms + m.astype(np.int64) * 60_000,
                    "signal": signal,
                    "value": np.round(values[p, m], decimals),
                }
            )
        )

    worn = rng.random((patients, minutes)) > 0.02
    every = np.ones((patients, minutes), bool)
    emit("heart_rate", worn, hr, 0)
    emit("spo2", worn, np.clip(spo2, 50, 100), 0)
    emit("steps", worn, steps.astype(np.float64), 0)
    emit("respiratory_rate", worn & (t % 5 == 0)[None, :], np.clip(rr, 4, 60), 0)
    emit("temperature", worn & (t % 15 == 0)[None, :], temp, 1)
    apparent = burden >= 0.5
    cuff = ((t % 240 == 30)[None, :]) | (apparent & (t % 60 == 30)[None, :])
    emit("systolic_bp", cuff, np.clip(sbp, 50, 260), 0)
    emit("diastolic_bp", cuff, np.clip(0.55 * sbp + 10, 30, 150), 0)
    emit("consciousness", cuff, np.where(burden >= 1.1, 1.0, 0.0), 0)
    emit("glucose", cgm[:, None] & (t % 5 == 0)[None, :], np.clip(glucose, 40, 400), 0)
    on_o2 = (spo2 < 92) & ~copd[:, None]
    o2 = np.zeros((patients, minutes))
    o2[:, 1:] = np.diff(on_o2.astype(int), axis=1)
    emit("o2_flow", o2 != 0, np.where(o2 > 0, 2.0, 0.0), 0)
    lab_at = ((t % 1440 == 420)[None, :]) | (apparent & (t % 480 == 60)[None, :])
    lact = 1.0 + 3.5 * burden**2 + rng.normal(0, 0.2, (patients, minutes))
    emit("lactate", lab_at & every, np.clip(lact, 0.2, 30), 1)
    emit("wbc", lab_at & every, np.clip(8 + 9 * burden, 1, 60), 1)
    samples = pd.concat(rows, ignore_index=True)
    labs = samples["signal"].isin(["lactate", "wbc"])
    samples["available_ms"] = pd.array(
        np.where(labs, samples["t_ms"] + 45 * 60_000, samples["t_ms"]), dtype="Int64"
    )

    crit_idx = np.argmax(burden >= 1.0, axis=1)
    crit = (burden >= 1.0).any(axis=1)
    ep = np.nonzero(has_ep & (onset < minutes))[0]
    labels = pd.DataFrame(
        {
            "patient_id": np.asarray(ids)[ep],
            "condition": "synthetic_deterioration",
            "onset_ms": start_ms + np.floor(onset[ep]).astype(np.int64) * 60_000,
            "critical_event_ms": pd.array(
                np.where(crit[ep], start_ms + crit_idx[ep].astype(np.int64) * 60_000, 0),
                dtype="Int64",
            ),
            "outcome": np.where(crit[ep], "critical", "ongoing"),
        }
    )
    labels.loc[~crit[ep], "critical_event_ms"] = pd.NA
    treatments = pd.DataFrame(
        {
            "patient_id": np.asarray(ids)[ep],
            "t_ms": start_ms + (np.floor(onset[ep]) + 240).astype(np.int64) * 60_000,
            "medication": "antibiotic",
            "action": "administered",
        }
    )
    treatments = treatments[treatments["t_ms"] < start_ms + minutes * 60_000]
    return validate(samples, static, treatments, labels)
