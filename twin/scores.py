"""Bedside early-warning scores: NEWS2 and qSOFA, as pure functions of the latest observations.

Why these scores and these exact numbers
----------------------------------------
NEWS2 is the Royal College of Physicians' National Early Warning Score 2 (RCP, 2017), the
score UK wards escalate on; every threshold below is the RCP 2017 chart, both SpO2 scales, as
copied into ``shared/reference/clinical.md``. qSOFA is the Sepsis-3 bedside screen (Singer et
al., JAMA 2016). A twin must reproduce the chart a nurse would fill in by hand, so nothing here
is tuned, smoothed or interpolated.

Rounding rule (values between the chart's bands)
------------------------------------------------
The chart is written in whole numbers (respiratory rate, SpO2, systolic BP, pulse) and in
tenths of a degree (temperature), so a streamed value such as RR 20.5 falls between bands.
Each value is first rounded *half up* to the chart's resolution and then looked up:

* RR 20.4 -> 20 (0 points); RR 20.5 -> 21 (2 points);
* temperature 38.04 -> 38.0 (0 points); 38.05 -> 38.1 (1 point).

Half up, not Python's banker's ``round``, because that is how a value is charted by hand and
it treats 20.5 and 21.5 alike (banker's rounding would send one down and the other up). Binary floating point cannot hold most decimals exactly (a converted
temperature can arrive as 38.04999999999999), so the scaled value is snapped to 1e-6 of the
chart unit before the half-up step; a value within that distance of a half is treated as the
half. Rounding works on integers (whole units or tenths) so the band comparisons are exact.

Missing parameters
------------------
A parameter that was not given is listed in ``missing`` and contributes nothing: it is never
scored as normal behind the caller's back. ``total`` is the sum over the given parameters, so
the total and band of an incomplete score are lower bounds; callers must check ``complete``
before treating a low score as reassuring.

On SpO2 scale 2 the SpO2 points depend on whether the patient breathes oxygen. When
``on_oxygen`` is unknown, SpO2 is scored as if on air (the lower of the two readings for
SpO2 >= 93, so again a lower bound) and ``"air_or_oxygen"`` is listed as missing. On scale 1
oxygen does not change the SpO2 points; it only scores through ``air_or_oxygen``.

Consciousness is ACVPU: ``"A"`` (or ``Acvpu.ALERT`` / 0) scores 0; new confusion, voice, pain
or unresponsive (``"C"``, ``"V"``, ``"P"``, ``"U"`` or 1..4) score 3. Letters are upper case
only; anything else is rejected rather than guessed.

Invalid input (a non-finite number, an unknown ACVPU code, an SpO2 scale other than 1 or 2)
raises ``ValueError``. The per-parameter functions are called on the streaming hot path, so
they are plain comparisons with no allocation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from twin.signals import ACVPU_CODES, Acvpu


class Band(StrEnum):
    """NEWS2 clinical response bands (RCP 2017)."""

    ROUTINE = "routine"  # total 0
    LOW = "low"  # total 1-4, no single parameter scoring 3
    LOW_MEDIUM = "low_medium"  # a single parameter scoring 3, total < 5
    MEDIUM = "medium"  # total 5-6
    HIGH = "high"  # total >= 7


NEWS2_PARAMETERS: tuple[str, ...] = (
    "respiratory_rate",
    "spo2",
    "air_or_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
)
_QSOFA_PARAMETERS: tuple[str, ...] = ("respiratory_rate", "systolic_bp", "altered_mentation")

# Seven parameters, at most 3 points each, but air_or_oxygen tops out at 2.
_NEWS2_MAX = 20
# Half-up rounding first snaps the scaled value to this many decimals, absorbing binary
# floating-point error (see the module docstring).
_SNAP_DECIMALS = 6


def _half_up(value: float, per_unit: int, name: str) -> int:
    """``value`` rounded half up to 1/``per_unit`` of its unit, as an integer count of steps."""
    if not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return math.floor(round(value * per_unit, _SNAP_DECIMALS) + 0.5)


def respiratory_rate_points(rr: float) -> int:
    r = _half_up(rr, 1, "respiratory rate")
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def spo2_points(spo2: float, *, on_oxygen: bool, scale: int = 1) -> int:
    s = _half_up(spo2, 1, "SpO2")
    if scale == 1:
        if s <= 91:
            return 3
        if s <= 93:
            return 2
        if s <= 95:
            return 1
        return 0
    if scale == 2:
        if s <= 83:
            return 3
        if s <= 85:
            return 2
        if s <= 87:
            return 1
        # Above the 88-92 % target only supplemental oxygen scores: on air a high saturation
        # is harmless, on oxygen it signals over-oxygenation of a CO2-retaining patient.
        if s <= 92 or not on_oxygen:
            return 0
        if s <= 94:
            return 1
        if s <= 96:
            return 2
        return 3
    raise ValueError(f"SpO2 scale must be 1 or 2, got {scale!r}")


def air_or_oxygen_points(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def systolic_bp_points(sbp: float) -> int:
    s = _half_up(sbp, 1, "systolic BP")
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def pulse_points(pulse: float) -> int:
    p = _half_up(pulse, 1, "pulse")
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def consciousness_points(level: str | int) -> int:
    if isinstance(level, str):
        code = ACVPU_CODES.get(level)
        if code is None:
            raise ValueError(f"unknown ACVPU letter {level!r}; expected one of A, C, V, P, U")
        return 0 if code == Acvpu.ALERT else 3
    # bool is an int subclass; True is not a consciousness level.
    if isinstance(level, int) and not isinstance(level, bool):
        if level == Acvpu.ALERT:
            return 0
        if Acvpu.CONFUSION <= level <= Acvpu.UNRESPONSIVE:
            return 3
    raise ValueError(f"unknown ACVPU level {level!r}; expected a letter A, C, V, P, U or 0..4")


def temperature_points(temp: float) -> int:
    # Compared in tenths of a degree so the chart's decimal edges are exact integers.
    t = _half_up(temp, 10, "temperature")
    if t <= 350:
        return 3
    if t <= 360:
        return 1
    if t <= 380:
        return 0
    if t <= 390:
        return 1
    return 2


def band_for(total: int, any_single_3: bool) -> Band:
    if not 0 <= total <= _NEWS2_MAX:
        raise ValueError(f"NEWS2 total must be 0..{_NEWS2_MAX}, got {total!r}")
    if total >= 7:
        return Band.HIGH
    if total >= 5:
        return Band.MEDIUM
    # A single red score escalates a low total, but never lowers a medium or high one.
    if any_single_3:
        return Band.LOW_MEDIUM
    if total >= 1:
        return Band.LOW
    return Band.ROUTINE


@dataclass(frozen=True, slots=True)
class News2:
    total: int
    points: dict[str, int]  # parameter -> points, only for parameters that were given
    missing: tuple[str, ...]  # parameters not given, in NEWS2_PARAMETERS order
    band: Band
    spo2_scale: int

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def any_single_3(self) -> bool:
        return any(p == 3 for p in self.points.values())


def news2(
    *,
    respiratory_rate: float | None = None,
    spo2: float | None = None,
    on_oxygen: bool | None = None,
    systolic_bp: float | None = None,
    pulse: float | None = None,
    consciousness: str | int | None = None,
    temperature: float | None = None,
    spo2_scale: int = 1,
) -> News2:
    """NEWS2 (RCP 2017) from whichever parameters are known; see the module docstring."""
    # Checked up front so a bad scale fails even when SpO2 happens to be missing.
    if spo2_scale not in (1, 2):
        raise ValueError(f"SpO2 scale must be 1 or 2, got {spo2_scale!r}")
    points: dict[str, int] = {}
    if respiratory_rate is not None:
        points["respiratory_rate"] = respiratory_rate_points(respiratory_rate)
    if spo2 is not None:
        points["spo2"] = spo2_points(spo2, on_oxygen=bool(on_oxygen), scale=spo2_scale)
    if on_oxygen is not None:
        points["air_or_oxygen"] = air_or_oxygen_points(on_oxygen)
    if systolic_bp is not None:
        points["systolic_bp"] = systolic_bp_points(systolic_bp)
    if pulse is not None:
        points["pulse"] = pulse_points(pulse)
    if consciousness is not None:
        points["consciousness"] = consciousness_points(consciousness)
    if temperature is not None:
        points["temperature"] = temperature_points(temperature)
    missing = tuple(p for p in NEWS2_PARAMETERS if p not in points)
    total = sum(points.values())
    single_3 = any(p == 3 for p in points.values())
    return News2(
        total=total,
        points=points,
        missing=missing,
        band=band_for(total, single_3),
        spo2_scale=spo2_scale,
    )


@dataclass(frozen=True, slots=True)
class Qsofa:
    total: int
    points: dict[str, int]  # parameter -> points, only for parameters that were given
    missing: tuple[str, ...]  # parameters not given: respiratory_rate, systolic_bp, mentation

    @property
    def positive(self) -> bool:
        return self.total >= 2


def qsofa_respiratory_rate_point(rr: float) -> int:
    """qSOFA's respiratory criterion (RR >= 22 after half-up rounding) as 0 or 1."""
    return int(_half_up(rr, 1, "respiratory rate") >= 22)


def qsofa_systolic_bp_point(sbp: float) -> int:
    """qSOFA's hypotension criterion (SBP <= 100 after half-up rounding) as 0 or 1."""
    return int(_half_up(sbp, 1, "systolic BP") <= 100)


def qsofa(
    *,
    respiratory_rate: float | None = None,
    systolic_bp: float | None = None,
    altered_mentation: bool | None = None,
) -> Qsofa:
    """qSOFA (Sepsis-3): one point each for SBP <= 100, RR >= 22 and altered mentation.

    RR and SBP are rounded half up to whole numbers first, as for NEWS2.
    """
    points: dict[str, int] = {}
    if respiratory_rate is not None:
        points["respiratory_rate"] = qsofa_respiratory_rate_point(respiratory_rate)
    if systolic_bp is not None:
        points["systolic_bp"] = qsofa_systolic_bp_point(systolic_bp)
    if altered_mentation is not None:
        points["altered_mentation"] = int(altered_mentation)
    missing = tuple(p for p in _QSOFA_PARAMETERS if p not in points)
    return Qsofa(total=sum(points.values()), points=points, missing=missing)
