"""Usual care: the simulated clinicians who recognise an episode and treat it.

Usual care is part of the world being simulated (real monitoring data comes from treated
patients), not a policy under test: it reacts to the latent burden crossing a recognition level
drawn per episode, then treats after a drawn delay, as ward teams do. Each condition has a few
regimens; a regimen is a bolus drug given every ``interval_min`` until the burden falls below
``stop_below`` (or ``max_doses``), or a continuous drug switched on at burden ``on_at`` and off
below ``off_fraction * on_at``. Turn it off (``SimulationConfig.usual_care = False``) to let a
schedule or a policy be the only treatment, as a trial arm does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from simulators.cohort import Cohort
from simulators.conditions import (
    CONDITION_CODE,
    EFFECTS,
    Condition,
    Effect,
    Episodes,
)
from simulators.grid import NEVER, STEP_MIN
from simulators.interventions import DRUG_CODE, DRUG_ORDER, DRUGS, SOURCES, DoseLog, Drug

Trigger = Literal["recognition", "critical"]


@dataclass(frozen=True, slots=True)
class Regimen:
    drug: Drug
    dose: float
    interval_min: int  # bolus: minutes between doses; continuous: 0
    max_doses: int
    trigger: Trigger
    stop_below: float  # bolus: no further dose once burden is below; continuous: unused
    on_at: float | None = None  # continuous: switch on at this burden (None: oxygen rule)
    off_fraction: float = 0.6
    only_variant: bool = False  # COPD: antibiotics only for infective exacerbations
    start_after_min: int = 0  # after the trigger (recognition delay is added separately)


REGIMENS: dict[Condition, tuple[Regimen, ...]] = {
    Condition.SEPSIS: (
        Regimen(Drug.ANTIBIOTIC, 4.5, 8 * 60, 21, "recognition", 0.08),
        Regimen(Drug.OXYGEN, 2.0, 0, 0, "recognition", 0.0),
        Regimen(
            Drug.VASOPRESSOR,
            0.1,
            0,
            0,
            "critical",
            0.0,
            on_at=0.9,
            off_fraction=0.75,
            start_after_min=30,
        ),
    ),
    Condition.HF_DECOMPENSATION: (
        Regimen(Drug.DIURETIC, 40.0, 12 * 60, 14, "recognition", 0.15),
        Regimen(Drug.OXYGEN, 2.0, 0, 0, "recognition", 0.0),
    ),
    Condition.COPD_EXACERBATION: (
        Regimen(Drug.STEROID, 30.0, 24 * 60, 5, "recognition", 0.0),
        Regimen(Drug.ANTIBIOTIC, 4.5, 8 * 60, 15, "recognition", 0.08, only_variant=True),
        Regimen(Drug.OXYGEN, 1.0, 0, 0, "recognition", 0.0),
    ),
    Condition.HYPOGLYCAEMIA: (
        # The "rule of 15": 15 g of glucose, recheck after 15-20 min, repeat while still low.
        Regimen(Drug.GLUCOSE, 15.0, 20, 4, "recognition", 0.3),
    ),
}

SPO2_TARGET_FLOOR = (92.0, 88.0)  # start oxygen below this SpO2 on scale 1 / scale 2


@dataclass(frozen=True, slots=True)
class Slots:
    """Usual-care regimens instantiated per episode (flat arrays, one row per slot)."""

    episode: npt.NDArray[np.int64]
    drug: npt.NDArray[np.int64]  # DRUG_CODE
    continuous: npt.NDArray[np.bool_]
    dose: npt.NDArray[np.float64]
    interval_steps: npt.NDArray[np.int64]
    max_doses: npt.NDArray[np.int64]
    on_critical: npt.NDArray[np.bool_]  # trigger is the critical event, not recognition
    start_after_steps: npt.NDArray[np.int64]
    stop_below: npt.NDArray[np.float64]
    on_at: npt.NDArray[np.float64]
    off_at: npt.NDArray[np.float64]

    @property
    def n(self) -> int:
        return int(self.episode.shape[0])


def build_slots(cohort: Cohort, episodes: Episodes, step_min: int = STEP_MIN) -> Slots:
    cols: dict[str, list[float | int | bool]] = {k: [] for k in Slots.__slots__}
    effect_rows = episodes.effect_row()
    for e in range(episodes.n):
        cond = Condition(list(CONDITION_CODE)[int(episodes.condition[e])])
        row = int(episodes.row[e])
        for reg in REGIMENS[cond]:
            if reg.only_variant and not bool(episodes.variant[e]):
                continue
            dose = reg.dose
            on_at = reg.on_at if reg.on_at is not None else 0.0
            if reg.drug is Drug.OXYGEN:
                scale2 = bool(cohort.hypercapnic[row])
                target = SPO2_TARGET_FLOOR[1 if scale2 else 0]
                drop = -EFFECTS[effect_rows[e], Effect.SPO2]
                on_at = float(np.clip((cohort.spo2_0[row] - target) / max(drop, 1e-6), 0.15, 1.2))
            if reg.drug is Drug.DIURETIC and episodes.severity[e] > 1.2:
                dose = 2 * reg.dose
            cols["episode"].append(e)
            cols["drug"].append(DRUG_CODE[reg.drug])
            cols["continuous"].append(DRUGS[reg.drug].continuous)
            cols["dose"].append(dose)
            cols["interval_steps"].append(max(1, reg.interval_min // step_min))
            cols["max_doses"].append(reg.max_doses)
            cols["on_critical"].append(reg.trigger == "critical")
            cols["start_after_steps"].append(reg.start_after_min // step_min)
            cols["stop_below"].append(reg.stop_below)
            cols["on_at"].append(on_at)
            cols["off_at"].append(on_at * reg.off_fraction)
    dtypes = {
        "episode": np.int64,
        "drug": np.int64,
        "continuous": np.bool_,
        "dose": np.float64,
        "interval_steps": np.int64,
        "max_doses": np.int64,
        "on_critical": np.bool_,
        "start_after_steps": np.int64,
        "stop_below": np.float64,
        "on_at": np.float64,
        "off_at": np.float64,
    }
    return Slots(**{k: np.asarray(v, dtype=dtypes[k]) for k, v in cols.items()})


I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_USUAL = SOURCES.index("usual_care")


class UsualCare:
    """Stateful stepper over one chunk's episodes; ``physiology.run_latent`` drives it.

    At each grid step ``s`` it sees the burden after the step and decides doses given at minute
    ``s * STEP_MIN``; bolus doses are returned so the caller applies them from the next step.
    """

    def __init__(self, cohort: Cohort, episodes: Episodes) -> None:
        self.slots = build_slots(cohort, episodes)
        sl = self.slots
        self._recognition = episodes.recognition
        self._delay = -(-np.ceil(episodes.delay_min).astype(np.int64) // STEP_MIN)
        self.recognized = np.full(episodes.n, NEVER, np.int64)
        self._row = episodes.row[sl.episode]
        self._next = np.full(sl.n, NEVER, np.int64)
        self._start = np.full(sl.n, NEVER, np.int64)
        self._count = np.zeros(sl.n, np.int64)
        self._done = np.zeros(sl.n, bool)
        self._on = np.zeros(sl.n, bool)
        self._last = np.full((cohort.n, len(DRUG_ORDER)), -NEVER, np.int64)
        self._level = np.zeros((cohort.n, len(DRUG_ORDER)))
        self._n_pat = cohort.n
        self.logs: list[DoseLog] = []

    def _log(self, rows: I64, drugs: I64, doses: F64, s: int) -> None:
        n = rows.shape[0]
        self.logs.append(
            DoseLog(
                rows.astype(np.int64),
                drugs.astype(np.int64),
                np.full(n, float(s * STEP_MIN)),
                doses.astype(np.float64),
                np.full(n, _USUAL, np.int64),
            )
        )

    def step(
        self,
        s: int,
        b: F64,
        active: npt.NDArray[np.bool_],
        alive: npt.NDArray[np.bool_],
        critical: I64,
    ) -> tuple[I64, I64, F64] | None:
        """Recognise, then dose at step ``s``; returns the bolus doses given (rows, drugs, doses)."""
        newly = active & (self.recognized == NEVER) & (b >= self._recognition)
        self.recognized[newly] = s
        sl = self.slots
        if sl.n == 0:
            return None
        ep = sl.episode
        trig = np.where(sl.on_critical, critical[ep], self.recognized[ep] + self._delay[ep])
        self._start = np.where(trig >= NEVER, NEVER, trig + sl.start_after_steps)
        self._next = np.where(self._next == NEVER, self._start, self._next)
        slot_alive = alive[ep]
        be = b[ep]
        out: tuple[I64, I64, F64] | None = None
        due = ~sl.continuous & ~self._done & (self._next <= s)
        if due.any():
            stop = due & (~slot_alive | ((self._count > 0) & (be < sl.stop_below)))
            self._done |= stop
            go = due & ~stop
            # Two episodes needing the same drug share it: skip a dose given recently by another.
            recent = (s - self._last[self._row, sl.drug]) * 2 < sl.interval_steps
            give = go & ~recent
            self._next = np.where(go, s + sl.interval_steps, self._next)
            self._count += give
            self._done |= give & (self._count >= sl.max_doses)
            idx = np.nonzero(give)[0]
            if idx.size:
                rows, drugs, doses = self._row[idx], sl.drug[idx], sl.dose[idx]
                self._last[rows, drugs] = s
                self._log(rows, drugs, doses, s)
                out = (rows, drugs, doses)
        act = sl.continuous & ~self._done & (self._start <= s) & slot_alive
        if (act | self._on).any():
            want = act & ((be >= sl.on_at) | (self._on & (be >= sl.off_at)))
            self._on = want
            new_level = np.zeros_like(self._level)
            c = np.nonzero(sl.continuous)[0]
            np.maximum.at(new_level, (self._row[c], sl.drug[c]), np.where(want[c], sl.dose[c], 0.0))
            present = np.zeros(self._n_pat, bool)
            present[self._row[slot_alive]] = True
            changed = (new_level != self._level) & present[:, None]
            rows, drugs = np.nonzero(changed)
            if rows.size:
                self._log(rows, drugs, new_level[rows, drugs], s)
                self._level[rows, drugs] = new_level[rows, drugs]
        return out
