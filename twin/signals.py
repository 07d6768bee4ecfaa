"""The signals a twin carries: codes, canonical units, unit conversion, plausibility, staleness.

Every number in this module is a documented choice; the README's "Signals" table is generated
from the same structures (``SIGNALS``), so the documentation cannot drift from the code.

Canonical units are UCUM. Inputs in other units are converted with ``UNIT_CONVERSIONS``;
a few common non-UCUM spellings ("bpm", "mmHg", ...) are mapped explicitly in ``UNIT_ALIASES``
(never guessed); anything else is rejected with ``Reason.UNKNOWN_UNIT``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Literal

from twin.errors import InvalidEvent, Reason


class Signal(StrEnum):
    HEART_RATE = "heart_rate"
    RESPIRATORY_RATE = "respiratory_rate"
    SPO2 = "spo2"
    TEMPERATURE = "temperature"
    SYSTOLIC_BP = "systolic_bp"
    DIASTOLIC_BP = "diastolic_bp"
    GLUCOSE = "glucose"  # interstitial (CGM)
    STEPS = "steps"
    O2_FLOW = "o2_flow"  # supplemental oxygen flow; 0 means room air
    CONSCIOUSNESS = "consciousness"  # ACVPU coded 0..4, see ``Acvpu``
    LACTATE = "lactate"
    WBC = "wbc"
    CREATININE = "creatinine"
    GLUCOSE_LAB = "glucose_lab"
    CRP = "crp"


class Acvpu(IntEnum):
    """ACVPU levels as the integers the twin stores (0 = Alert, anything else is not alert)."""

    ALERT = 0
    CONFUSION = 1
    VOICE = 2
    PAIN = 3
    UNRESPONSIVE = 4


ACVPU_CODES: dict[str, Acvpu] = {
    "A": Acvpu.ALERT,
    "C": Acvpu.CONFUSION,
    "V": Acvpu.VOICE,
    "P": Acvpu.PAIN,
    "U": Acvpu.UNRESPONSIVE,
}
ACVPU_LETTERS: dict[Acvpu, str] = {v: k for k, v in ACVPU_CODES.items()}

Kind = Literal["vital", "lab"]
Aggregate = Literal["mean", "sum"]


@dataclass(frozen=True, slots=True)
class SignalSpec:
    signal: Signal
    kind: Kind
    unit: str  # canonical UCUM unit
    plausible_min: float  # below: a physiologically impossible reading, kept as an artifact
    plausible_max: float
    stale_after_s: int  # older than this (event time) and the value no longer counts in scores
    aggregate: Aggregate = "mean"  # how samples fold into a forecasting window bin
    windowed: bool = False  # carried as a binned 24 h window for forecasting


_H = 3600

# Plausibility limits bound what a living patient can show on that sensor. They are wide on
# purpose: a very sick patient must never be filed as an artifact. HR 0 from a worn sensor,
# SpO2 above 100 % or a temperature of 60 Cel are artifacts; HR 25 is bradycardia, not an
# artifact. Staleness: wearable streams (HR, SpO2, RR) refresh every minute, so an hour-old value
# means the sensor is off; ward observations (BP, temperature) are charted every 4-12 h, so they
# stay valid longer; consciousness is charted with the observation set.
SIGNALS: dict[Signal, SignalSpec] = {
    s.signal: s
    for s in (
        SignalSpec(Signal.HEART_RATE, "vital", "/min", 20, 300, 1 * _H, windowed=True),
        SignalSpec(Signal.RESPIRATORY_RATE, "vital", "/min", 2, 80, 1 * _H, windowed=True),
        SignalSpec(Signal.SPO2, "vital", "%", 40, 100, 1 * _H, windowed=True),
        SignalSpec(Signal.TEMPERATURE, "vital", "Cel", 25, 45, 12 * _H, windowed=True),
        SignalSpec(Signal.SYSTOLIC_BP, "vital", "mm[Hg]", 40, 300, 12 * _H, windowed=True),
        SignalSpec(Signal.DIASTOLIC_BP, "vital", "mm[Hg]", 15, 200, 12 * _H),
        SignalSpec(Signal.GLUCOSE, "vital", "mg/dL", 20, 700, 1 * _H, windowed=True),
        SignalSpec(Signal.STEPS, "vital", "{steps}", 0, 400, 1 * _H, "sum", windowed=True),
        SignalSpec(Signal.O2_FLOW, "vital", "L/min", 0, 80, 24 * _H),
        SignalSpec(Signal.CONSCIOUSNESS, "vital", "{ACVPU}", 0, 4, 12 * _H),
        SignalSpec(Signal.LACTATE, "lab", "mmol/L", 0.1, 40, 48 * _H),
        SignalSpec(Signal.WBC, "lab", "10*3/uL", 0.01, 500, 72 * _H),
        SignalSpec(Signal.CREATININE, "lab", "mg/dL", 0.05, 30, 72 * _H),
        SignalSpec(Signal.GLUCOSE_LAB, "lab", "mg/dL", 10, 2000, 24 * _H),
        SignalSpec(Signal.CRP, "lab", "mg/L", 0, 1000, 72 * _H),
    )
}

# The order of channels in a twin's forecasting window. Append only: the order is part of the
# serialised state and of trained checkpoints' feature spec.
WINDOW_CHANNELS: tuple[Signal, ...] = (
    Signal.HEART_RATE,
    Signal.RESPIRATORY_RATE,
    Signal.SPO2,
    Signal.TEMPERATURE,
    Signal.SYSTOLIC_BP,
    Signal.GLUCOSE,
    Signal.STEPS,
)
CHANNEL_INDEX: dict[Signal, int] = {s: i for i, s in enumerate(WINDOW_CHANNELS)}
assert all(SIGNALS[s].windowed for s in WINDOW_CHANNELS)

LOINC_TO_SIGNAL: dict[str, Signal] = {
    "8867-4": Signal.HEART_RATE,
    "9279-1": Signal.RESPIRATORY_RATE,
    "59408-5": Signal.SPO2,  # SpO2 by pulse oximetry
    "2708-6": Signal.SPO2,  # oxygen saturation in arterial blood (vital-signs profile pairs it)
    "8310-5": Signal.TEMPERATURE,
    "8480-6": Signal.SYSTOLIC_BP,
    "8462-4": Signal.DIASTOLIC_BP,
    "99504-3": Signal.GLUCOSE,  # interstitial glucose, mass/volume
    "105272-9": Signal.GLUCOSE,  # interstitial glucose, moles/volume
    "55423-8": Signal.STEPS,  # number of steps in unspecified time (per sample interval)
    "3151-8": Signal.O2_FLOW,  # inhaled oxygen flow rate
    "67775-7": Signal.CONSCIOUSNESS,  # level of responsiveness (ACVPU)
    "2524-7": Signal.LACTATE,
    "6690-2": Signal.WBC,  # leukocytes, automated count
    "26464-8": Signal.WBC,  # leukocytes in blood
    "2160-0": Signal.CREATININE,  # mass/volume
    "14682-9": Signal.CREATININE,  # moles/volume
    "2339-0": Signal.GLUCOSE_LAB,  # blood, mass/volume
    "2345-7": Signal.GLUCOSE_LAB,  # serum or plasma, mass/volume
    "15074-8": Signal.GLUCOSE_LAB,  # blood, moles/volume
    "14749-6": Signal.GLUCOSE_LAB,  # serum or plasma, moles/volume
    "1988-5": Signal.CRP,
}
SIGNAL_TO_LOINC: dict[Signal, str] = {}
for _code, _sig in LOINC_TO_SIGNAL.items():
    SIGNAL_TO_LOINC.setdefault(_sig, _code)

# Panels whose components carry the values (FHIR vital-signs profile).
PANEL_CODES = frozenset({"85353-1", "85354-9"})

# Molar masses fix the molar <-> mass conversions: glucose 180.16 g/mol, lactate 90.08 g/mol,
# creatinine 113.12 g/mol (so 1 mg/dL = 88.4 umol/L).
_GLUCOSE_MMOL = 18.016
_LACTATE_MGDL = 1 / 9.008
_CREATININE_UMOL = 1 / 88.4

# signal -> {UCUM unit: (scale, offset)}: canonical = value * scale + offset.
UNIT_CONVERSIONS: dict[Signal, dict[str, tuple[float, float]]] = {
    Signal.HEART_RATE: {"/min": (1, 0), "{beats}/min": (1, 0)},
    Signal.RESPIRATORY_RATE: {"/min": (1, 0), "{breaths}/min": (1, 0)},
    Signal.SPO2: {"%": (1, 0)},
    Signal.TEMPERATURE: {"Cel": (1, 0), "[degF]": (5 / 9, -160 / 9), "K": (1, -273.15)},
    Signal.SYSTOLIC_BP: {"mm[Hg]": (1, 0)},
    Signal.DIASTOLIC_BP: {"mm[Hg]": (1, 0)},
    Signal.GLUCOSE: {"mg/dL": (1, 0), "mmol/L": (_GLUCOSE_MMOL, 0)},
    Signal.STEPS: {"{steps}": (1, 0), "1": (1, 0)},
    Signal.O2_FLOW: {"L/min": (1, 0)},
    Signal.CONSCIOUSNESS: {"{ACVPU}": (1, 0)},
    Signal.LACTATE: {"mmol/L": (1, 0), "mg/dL": (_LACTATE_MGDL, 0)},
    Signal.WBC: {"10*3/uL": (1, 0), "10*9/L": (1, 0)},
    Signal.CREATININE: {"mg/dL": (1, 0), "umol/L": (_CREATININE_UMOL, 0)},
    Signal.GLUCOSE_LAB: {"mg/dL": (1, 0), "mmol/L": (_GLUCOSE_MMOL, 0)},
    Signal.CRP: {"mg/L": (1, 0), "mg/dL": (10, 0)},
}

# Non-UCUM spellings seen in device and EHR feeds, mapped explicitly to their UCUM unit.
UNIT_ALIASES: dict[str, str] = {
    "bpm": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "mmHg": "mm[Hg]",
    "degC": "Cel",
    "°C": "Cel",
    "degF": "[degF]",
    "°F": "[degF]",
    "steps": "{steps}",
    "l/min": "L/min",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
}


def to_canonical(signal: Signal, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the signal's canonical UCUM unit, or reject it."""
    if not math.isfinite(value):
        raise InvalidEvent(Reason.NON_FINITE_VALUE, f"{signal.value} value {value!r} is not finite")
    table = UNIT_CONVERSIONS[signal]
    conv = table.get(unit)
    if conv is None:
        alias = UNIT_ALIASES.get(unit)
        conv = table.get(alias) if alias is not None else None
    if conv is None:
        raise InvalidEvent(
            Reason.UNKNOWN_UNIT,
            f"unit {unit!r} is not accepted for {signal.value}; accepted: {sorted(table)}",
        )
    scale, offset = conv
    return value * scale + offset


def signal_for_loinc(code: str) -> Signal:
    sig = LOINC_TO_SIGNAL.get(code)
    if sig is None:
        raise InvalidEvent(
            Reason.UNKNOWN_CODE, f"LOINC code {code!r} is not a signal vitaltwin carries"
        )
    return sig


def artifact_reason(signal: Signal, value: float) -> str | None:
    """Why a canonical value cannot be physiological, or None when it can."""
    spec = SIGNALS[signal]
    if value < spec.plausible_min:
        return (
            f"{signal.value} {value:g} {spec.unit} below plausible minimum {spec.plausible_min:g}"
        )
    if value > spec.plausible_max:
        return (
            f"{signal.value} {value:g} {spec.unit} above plausible maximum {spec.plausible_max:g}"
        )
    return None
