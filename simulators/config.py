"""What to simulate: cohort size, horizon, seed, start time, care model and device behaviour.

Configurations are frozen data. Time in the simulator is minutes (or milliseconds, for
deliveries) after ``start``, an aware UTC datetime the caller gives; nothing reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.errors import ConfigError

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC
MINUTES_PER_DAY = 1440
# Patient-minutes per block of signal generation: small enough that a block's arrays stay in
# the CPU caches (about 100 bytes per patient-minute while a block is simulated), large enough
# that per-call overhead is small against vector work. Latent courses run over larger chunks.
DEFAULT_CHUNK_PATIENT_MINUTES = 1_500_000
COURSE_CHUNK_PATIENTS = 16_384


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Device and delivery behaviour. Rates are per sample unless the name says otherwise.

    Defaults and their sources are in docs/simulator.md ("Devices").
    """

    # Wearable gateway latency: log-normal, capped. Caps bound out-of-order delivery, so a
    # consumer's lateness allowance of ``max_lateness()`` never drops a sample.
    wearable_delay_median_s: float = 8.0
    wearable_delay_sigma: float = 1.2
    wearable_max_delay_s: float = 600.0
    cgm_delay_median_s: float = 30.0
    cgm_max_delay_s: float = 600.0
    # Cuff readings and charted observations reach the EHR when the nurse charts them.
    charting_max_delay_s: float = 1800.0
    # EHR messages (labs after release, medications after administration).
    ehr_max_delay_s: float = 900.0
    duplicate_rate: float = 0.005  # per wearable upload packet (one per patient-minute)
    dropouts_per_day: float = 1.2  # sensor off / loose / battery episodes
    motion_artifact_rate: float = 0.08  # fraction of walking minutes with a motion artifact
    contact_artifact_rate: float = 0.001  # per HR/SpO2 sample, at any time
    impossible_rate: float = 2e-4  # per sample and channel: sentinel values
    device_flag_fraction: float = 0.6  # share of artifacts the device itself flags

    def max_lateness(self) -> timedelta:
        """The most any record is delivered after its event time (the out-of-order bound)."""
        worst = max(
            self.wearable_max_delay_s,
            self.cgm_max_delay_s,
            self.charting_max_delay_s,
            self.ehr_max_delay_s,
        )
        return timedelta(seconds=worst)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """A cohort simulation. ``risk`` multiplies a condition's onset hazard (enrichment)."""

    patients: int
    days: float = 7.0
    seed: int = 0
    start: datetime = DEFAULT_START
    home_fraction: float = 0.3  # share of patients on home monitoring; the rest are on a ward
    usual_care: bool = True  # simulated clinicians recognise and treat episodes
    risk: Mapping[str, float] = field(default_factory=dict)
    devices: DeviceConfig = field(default_factory=DeviceConfig)
    chunk_patients: int | None = None  # per signal block; None: from DEFAULT_CHUNK_PATIENT_MINUTES

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ConfigError(f"patients must be >= 1, got {self.patients}")
        if not (math.isfinite(self.days) and self.days > 0):
            raise ConfigError(f"days must be a positive number, got {self.days}")
        if self.minutes < 60:
            raise ConfigError("the horizon must be at least one hour")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ConfigError("start must be an aware datetime (UTC)")
        if self.start.utcoffset() != timedelta(0):
            object.__setattr__(self, "start", self.start.astimezone(UTC))
        if not 0.0 <= self.home_fraction <= 1.0:
            raise ConfigError(f"home_fraction must be in [0, 1], got {self.home_fraction}")
        from simulators.conditions import Condition  # local: conditions imports config

        for name, mult in self.risk.items():
            if name not in {c.value for c in Condition}:
                raise ConfigError(f"unknown condition in risk: {name!r}")
            if not (math.isfinite(mult) and mult >= 0):
                raise ConfigError(f"risk multiplier for {name} must be >= 0, got {mult}")
        if self.chunk_patients is not None and self.chunk_patients < 1:
            raise ConfigError("chunk_patients must be >= 1")

    @property
    def minutes(self) -> int:
        return round(self.days * MINUTES_PER_DAY)

    @property
    def start_ms(self) -> int:
        return int((self.start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))

    @property
    def start_minute_of_day(self) -> int:
        return self.start.hour * 60 + self.start.minute

    def patient_id(self, index: int) -> str:
        """Stable pseudonymous id; the seed keeps cohorts from different seeds apart."""
        return f"sim{self.seed}-{index:06d}"

    def chunk_size(self) -> int:
        if self.chunk_patients is not None:
            return self.chunk_patients
        return max(1, DEFAULT_CHUNK_PATIENT_MINUTES // self.minutes)

    def risk_multiplier(self, condition: str) -> float:
        return float(self.risk.get(condition, 1.0))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["risk"] = dict(self.risk)
        return data


def parse_shard(text: str, patients: int) -> range:
    """``"i/n"`` -> the i-th of n contiguous blocks of patient indices (0-based)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError(f"shard must look like 'i/n', got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {text!r}: need n >= 1 and 0 <= i < n")
    size = -(-patients // n)
    return range(min(i * size, patients), min((i + 1) * size, patients))


def check_indices(indices: Sequence[int], patients: int) -> list[int]:
    out = [int(i) for i in indices]
    if any(i < 0 or i >= patients for i in out):
        raise ConfigError(f"patient indices must be in [0, {patients})")
    if len(set(out)) != len(out):
        raise ConfigError("patient indices must be unique")
    return out
