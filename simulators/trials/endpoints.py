"""Per-twin endpoint records: one row per twin and arm, from a simulated course and the arm's log.

Times are hours after enrolment (the simulation start) unless the name says otherwise.
Follow-up ends at death, discharge or the horizon (``followup_h``); time-to-event columns hold
the event time when it happened and the end of follow-up otherwise (with the event flag).

======================  =========================================================================
column                  meaning
======================  =========================================================================
episode                 an episode of the endpoint condition started during follow-up
onset_h                 its onset (the first, for recurrent conditions)
critical, to_critical_h first critical event of the endpoint condition (burden >= 1)
died, death_h           all-cause death
treated, to_treatment_h the first such episode covered by a drug that clears it, hours after onset
                        (censored at the end of follow-up)
trial_doses             doses of the trial drugs given during follow-up (any source)
overtreated             trial drugs given to a twin without an episode of the endpoint condition
alerts                  alert episodes that reached the clinician (monitoring arms), notifications,
                        triggers, responses, courses: see ``policies.PatientLog``
cgm_readings, tir       CGM readings and the share in 70-180 mg/dL (``glucose_tir`` only)
======================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from simulators.conditions import CONDITION_CODE, Condition
from simulators.devices import Artifact
from simulators.engine import ChunkResult
from simulators.interventions import DRUG_CODE, Drug
from simulators.trials.policies import PatientLog
from simulators.trials.population import covariates
from twin.signals import Signal

TIR_RANGE = (70.0, 180.0)
ENDPOINT_COLUMNS = (
    "followup_h",
    "discharged",
    "died",
    "death_h",
    "episode",
    "onset_h",
    "critical",
    "to_critical_h",
    "treated",
    "to_treatment_h",
    "trial_doses",
    "overtreated",
    "notifications",
    "alerts",
    "triggers",
    "responses",
    "courses",
    "first_course_h",
    "cgm_readings",
    "tir",
)


def chunk_records(
    chunk: ChunkResult,
    condition: str,
    drugs: Sequence[Drug],
    logs: Mapping[str, PatientLog] | None,
    tir: bool,
) -> pd.DataFrame:
    """The endpoint rows of one simulated chunk (covariates first, then ``ENDPOINT_COLUMNS``)."""
    cohort, episodes, latent = chunk.cohort, chunk.episodes, chunk.latent
    n = cohort.n
    horizon = chunk.config.minutes
    end = latent.end_min(horizon)
    if condition == "any":
        target = latent.started.copy()
    else:
        target = latent.started & (episodes.condition == CONDITION_CODE[Condition(condition)])

    onset = np.full(n, np.nan)
    first_ep = np.full(n, -1, np.int64)
    critical = np.full(n, np.nan)
    for e in np.nonzero(target)[0]:  # episodes are sorted by (row, onset)
        r = int(episodes.row[e])
        if first_ep[r] < 0:
            first_ep[r] = e
            onset[r] = float(episodes.onset_min[e])
        c = latent.critical_min[e]
        if np.isfinite(c) and not (c >= critical[r]):
            critical[r] = c
    has_ep = first_ep >= 0
    treated_min = np.full(n, np.nan)
    treated_min[has_ep] = latent.treated_min[first_ep[has_ep]]
    treated = np.isfinite(treated_min)

    codes = np.array([DRUG_CODE[d] for d in drugs], np.int64)
    doses = latent.doses
    during = np.isin(doses.drug, codes) & (doses.minute < end[doses.row])
    trial_doses = np.bincount(doses.row[during], minlength=n)

    death = latent.death_min
    died = np.isfinite(death)
    out = covariates(cohort)
    out.insert(1, "patient_id", chunk.patient_ids)
    h = 1 / 60
    cols: dict[str, object] = {
        "followup_h": end * h,
        "discharged": np.isfinite(latent.discharge_min) & ~died,
        "died": died,
        "death_h": death * h,
        "episode": has_ep,
        "onset_h": onset * h,
        "critical": np.isfinite(critical),
        "to_critical_h": np.where(np.isfinite(critical), critical, end) * h,
        "treated": treated,
        "to_treatment_h": np.where(treated, treated_min - onset, end - onset) * h,
        "trial_doses": trial_doses.astype(np.int64),
        "overtreated": (trial_doses > 0) & ~has_ep,
    }
    ids = chunk.patient_ids
    for name in ("notifications", "alerts", "triggers", "responses", "courses"):
        if logs is None:
            cols[name] = np.full(n, -1, np.int64)  # -1: not a reactive arm
        else:
            cols[name] = np.array([getattr(logs.get(p, PatientLog()), name) for p in ids], np.int64)
    if logs is None:
        cols["first_course_h"] = np.full(n, np.nan)
    else:
        first = np.array([logs.get(p, PatientLog()).first_course_ms for p in ids], np.float64)
        cols["first_course_h"] = np.where(first >= 0, first / 3_600_000, np.nan)
    readings, in_range = _tir(chunk) if tir else (np.zeros(n, np.int64), np.zeros(n))
    cols["cgm_readings"] = readings
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["tir"] = np.where(readings > 0, in_range / np.maximum(readings, 1), np.nan)
    for name in ENDPOINT_COLUMNS:
        out[name] = cols[name]
    return out


def _tir(chunk: ChunkResult) -> tuple[np.ndarray, np.ndarray]:
    """CGM readings a twin would keep (sent, not flagged, plausible) and those in range."""
    n = chunk.cohort.n
    readings = np.zeros(n, np.int64)
    in_range = np.zeros(n, np.float64)
    ch = chunk.channels.get(Signal.GLUCOSE)
    if ch is None or ch.cols.size == 0:
        return readings, in_range
    ok = ch.sent & ~ch.flagged & (ch.artifact != Artifact.IMPOSSIBLE)
    lo, hi = TIR_RANGE
    inside = ok & (ch.value >= lo) & (ch.value <= hi)
    readings[ch.cols] = ok.sum(axis=1)
    in_range[ch.cols] = inside.sum(axis=1)
    return readings, in_range
