"""Enrolment: screen candidate twins in index order, keep those meeting the criteria.

Candidates are the simulator's patient indices 0, 1, 2, ... of the trial's cohort (its seed,
setting mix and risk multipliers). Each candidate's covariates come from its own random
stream, so screening is cheap (no physiology is simulated) and a twin's covariates never
depend on who else was screened. The first ``size`` eligible candidates are enrolled; the
counts by first failed criterion feed the CONSORT flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulators.cohort import HOME, Cohort, sample_cohort
from simulators.config import SimulationConfig
from simulators.trials.errors import SpecError
from simulators.trials.spec import Criteria, TrialSpec

BOOL = npt.NDArray[np.bool_]
SCREEN_BLOCK = 4096
MAX_SCREENED_PER_ENROLLED = 200
AGE_BANDS = ((0, 65, "<65"), (65, 80, "65-79"), (80, 200, ">=80"))


def base_config(spec: TrialSpec, patients: int, usual_care: bool = False) -> SimulationConfig:
    """The simulator configuration of the trial's cohort (``patients``: the screened pool)."""
    return SimulationConfig(
        patients=patients,
        days=spec.days,
        seed=spec.seed,
        start=spec.start,
        home_fraction=spec.population.home_fraction,
        usual_care=usual_care,
        risk={str(k): float(v) for k, v in spec.population.risk.items()},
    )


def comorbidity(cohort: Cohort, name: str) -> BOOL:
    if name == "diabetes":
        return np.asarray(cohort.diabetic)
    return np.asarray(getattr(cohort, name), dtype=bool)


def meets(criteria: Criteria, cohort: Cohort) -> tuple[BOOL, list[tuple[str, BOOL]]]:
    """Who meets the criteria, and each criterion's failures (in a fixed order)."""
    lo, hi = criteria.age
    checks: list[tuple[str, BOOL]] = [
        (f"age outside {lo:g}-{hi:g}", (cohort.age < lo) | (cohort.age > hi))
    ]
    if criteria.sex != "any":
        checks.append((f"not {criteria.sex}", cohort.female != (criteria.sex == "female")))
    if criteria.setting != "any":
        home = cohort.setting == HOME
        checks.append((f"not in {criteria.setting} setting", home != (criteria.setting == "home")))
    for name in criteria.require:
        checks.append((f"no {name}", ~comorbidity(cohort, name)))
    for name in criteria.exclude:
        checks.append((f"has {name}", comorbidity(cohort, name)))
    failed = np.zeros(cohort.n, bool)
    for _, bad in checks:
        failed |= bad
    return ~failed, checks


def covariates(cohort: Cohort) -> pd.DataFrame:
    """The enrolment covariates of a cohort, one row per twin (``twin`` is its index)."""
    age = np.asarray(cohort.age, dtype=np.float64)
    band = np.full(age.shape, AGE_BANDS[-1][2], dtype=object)
    for lo, hi, label in AGE_BANDS:
        band[(age >= lo) & (age < hi)] = label
    return pd.DataFrame(
        {
            "twin": cohort.index.astype(np.int64),
            "age": age,
            "age_band": band,
            "sex": np.where(cohort.female, "female", "male"),
            "setting": np.where(cohort.setting == HOME, "home", "ward"),
            "heart_failure": cohort.heart_failure.astype(bool),
            "copd": cohort.copd.astype(bool),
            "diabetes": np.asarray(cohort.diabetic, dtype=bool),
            "ckd": cohort.ckd.astype(bool),
            "hypertension": cohort.hypertension.astype(bool),
        }
    )


@dataclass(frozen=True)
class Enrolment:
    population: pd.DataFrame  # covariates of the enrolled twins, in index order
    screened: int  # candidates assessed (the pool size: indices 0 .. screened - 1)
    excluded: dict[str, int]  # first failed criterion -> count

    @property
    def twins(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.population["twin"].to_numpy(np.int64))


def enrol(spec: TrialSpec) -> Enrolment:
    """Screen candidates in index order until ``population.size`` are eligible."""
    size = spec.population.size
    config = base_config(spec, patients=1)
    limit = size * MAX_SCREENED_PER_ENROLLED
    frames: list[pd.DataFrame] = []
    excluded: dict[str, int] = {}
    found = 0
    start = 0
    while found < size:
        if start >= limit:
            raise SpecError(
                f"population.include is too narrow: {found} eligible twins in {start:,} screened"
                f" (need {size}); widen the criteria or raise population.risk / home_fraction"
            )
        cohort = sample_cohort(config, list(range(start, start + SCREEN_BLOCK)))
        ok, checks = meets(spec.population.include, cohort)
        keep = np.nonzero(ok)[0][: size - found]
        last = int(keep[-1]) + 1 if found + keep.size >= size else SCREEN_BLOCK
        # Count exclusions only among the candidates actually screened (up to the last one).
        first_fail = np.full(SCREEN_BLOCK, -1)
        for k, (_, bad) in reversed(list(enumerate(checks))):
            first_fail = np.where(bad, k, first_fail)
        for k, (reason, _) in enumerate(checks):
            c = int((first_fail[:last] == k).sum())
            if c:
                excluded[reason] = excluded.get(reason, 0) + c
        frames.append(covariates(cohort.take(keep)))
        found += keep.size
        start += last
    population = pd.concat(frames, ignore_index=True)
    return Enrolment(population=population, screened=start, excluded=excluded)
