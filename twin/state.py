"""A patient twin's state, its configuration, and its versioned serialisation.

Only ``twin.transition`` changes a state; everything else reads it. Every field is either a
merge that ignores arrival order (the newest reading by ``(observed time, event-id hash)``, the
earliest administration, an exact integer sum) or is derived from such fields, which is what
makes the state independent of arrival order within the lateness bound.

Forecasting window: the last ``window_bins`` bins of ``bin_s`` seconds per channel of
``twin.signals.WINDOW_CHANNELS``. Bins still open to out-of-order samples (those that end after
``watermark - lateness``) are kept as exact fixed-point integer sums, so the order samples arrive
in cannot change a single bit. When a bin closes, its mean (or sum, for steps) is frozen into a
float32 ring. This keeps a full 24 h twin near 10 KB.

Serialisation is compact JSON with an explicit ``schema_version`` (stdlib only, readable from
any language); the float32 ring travels as base64 of its little-endian bytes, so a state
round-trips bit for bit.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from twin.errors import TwinError
from twin.signals import WINDOW_CHANNELS, Signal

SCHEMA_VERSION = 1
FIXED_POINT = 1000  # window sums are kept in thousandths of the canonical unit

# (observed ms, event-id hash, value)
Reading = tuple[int, int, float]


@dataclass(frozen=True, slots=True)
class TwinConfig:
    """How twins are kept. ``bin_s`` and ``window_bins`` shape the state and are stored in it."""

    lateness_s: int = 600  # out-of-order arrivals within this bound give the in-order state
    bin_s: int = 300
    window_bins: int = 288  # 24 h of 5-minute bins
    forecast_every_s: int = 900
    dedup_capacity: int = 4096  # hard cap on remembered event ids (see TwinState.seen)

    def __post_init__(self) -> None:
        if self.lateness_s < 0 or self.bin_s <= 0 or self.window_bins <= 0:
            raise TwinError("lateness_s must be >= 0; bin_s and window_bins must be > 0")
        if self.forecast_every_s <= 0 or self.dedup_capacity <= 0:
            raise TwinError("forecast_every_s and dedup_capacity must be > 0")


DEFAULT_CONFIG = TwinConfig()


class TwinState:
    """Mutable only inside ``twin.transition``; treat every state you are handed as read-only."""

    __slots__ = (
        "_valid_until_ms",
        "artifact_count",
        "artifacts",
        "bin_ms",
        "closed_upto",
        "conditions",
        "demographics",
        "encounter_admit",
        "encounter_discharge",
        "labs_issued_ms",
        "late_count",
        "latest",
        "medications",
        "news2_band",
        "news2_missing",
        "news2_points",
        "news2_total",
        "open_bins",
        "oxygen",
        "patient_id",
        "qsofa_points",
        "qsofa_total",
        "ring",
        "seen",
        "spo2_target",
        "watermark_ms",
    )

    def __init__(self, patient_id: str, config: TwinConfig = DEFAULT_CONFIG) -> None:
        self.patient_id = patient_id
        self.bin_ms = config.bin_s * 1000
        self.watermark_ms = -1  # no event yet
        self.latest: dict[Signal, Reading] = {}
        self.labs_issued_ms: dict[Signal, int] = {}
        # newest artifact per signal: (observed ms, id hash, value, reason)
        self.artifacts: dict[Signal, tuple[int, int, float, str]] = {}
        self.artifact_count = 0
        self.late_count = 0
        self.ring: npt.NDArray[np.float32] = np.full(
            (len(WINDOW_CHANNELS), config.window_bins), np.nan, dtype=np.float32
        )
        self.closed_upto = -1  # absolute bin index: bins below it are closed (in the ring)
        # open bins: (absolute bin * n_channels + channel) -> (fixed-point sum, count); tuples,
        # replaced on update, so that a copy of the state need not copy each bin
        self.open_bins: dict[int, tuple[int, int]] = {}
        # id hash -> observed ms, for events whose bin is still open (older ones are "late")
        self.seen: dict[int, int] = {}
        # static covariates, all newest-wins by (observed ms, id hash)
        self.demographics: tuple[int, int, str | None, str] | None = None  # birth date, sex
        self.conditions: dict[str, tuple[int, int, bool]] = {}  # condition -> (.., active)
        self.encounter_admit: tuple[int, int, str | None] | None = None  # (.., ward)
        self.encounter_discharge: tuple[int, int] | None = None
        # medication class -> [first administered ms or -1, last ms, last id hash, action, dose]
        self.medications: dict[str, tuple[int, int, int, str, float | None]] = {}
        self.oxygen: tuple[int, int, bool, float | None] | None = None  # (.., on, flow)
        self.spo2_target: tuple[int, int, int] | None = None  # (.., scale)
        # scores derived from the above at the watermark
        self.news2_total = 0
        self.news2_band = "routine"
        self.news2_points: dict[str, int] = {}
        self.news2_missing: tuple[str, ...] = ()
        self.qsofa_total = 0
        self.qsofa_points: dict[str, int] = {}
        # transient cache, not state: the watermark at which some scored value goes stale
        self._valid_until_ms = -1

    # ---- read helpers -------------------------------------------------------------------

    @property
    def n_bins(self) -> int:
        return int(self.ring.shape[1])

    @property
    def spo2_scale(self) -> int:
        return 1 if self.spo2_target is None else self.spo2_target[2]

    @property
    def on_oxygen(self) -> bool | None:
        return None if self.oxygen is None else self.oxygen[2]

    @property
    def admitted(self) -> bool:
        if self.encounter_admit is None:
            return False
        return (
            self.encounter_discharge is None
            or self.encounter_discharge[:2] < (self.encounter_admit[:2])
        )

    @property
    def ward(self) -> str | None:
        return None if self.encounter_admit is None else self.encounter_admit[2]

    @property
    def comorbidities(self) -> frozenset[str]:
        return frozenset(c for c, (_, _, active) in self.conditions.items() if active)

    @property
    def active_medications(self) -> frozenset[str]:
        return frozenset(m for m, rec in self.medications.items() if rec[3] != "stopped")

    def latest_value(self, signal: Signal) -> float | None:
        reading = self.latest.get(signal)
        return None if reading is None else reading[2]

    def window(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Binned window ending with the watermark's bin: values [channels, bins] and a mask.

        Column -1 is the watermark's bin. Open bins report their provisional mean (or sum).
        ``mask`` is True where a bin holds at least one sample.
        """
        n_ch, n = self.ring.shape
        values = np.full((n_ch, n), np.nan, dtype=np.float32)
        if self.watermark_ms < 0:
            return values, np.zeros((n_ch, n), dtype=np.bool_)
        end = self.watermark_ms // self.bin_ms + 1  # exclusive absolute bin
        start = end - n
        closed_hi = min(self.closed_upto, end)
        if closed_hi > start:
            idx = np.arange(max(start, closed_hi - n), closed_hi)
            values[:, idx - start] = self.ring[:, idx % n]
        for key, (total, count) in self.open_bins.items():
            b, ch = divmod(key, n_ch)
            if start <= b < end:
                values[ch, b - start] = bin_value(WINDOW_CHANNELS[ch], total, count)
        return values, ~np.isnan(values)

    # ---- equality and serialisation ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Language-neutral form: plain JSON types, the ring as base64 of little-endian float32."""
        return {
            "schema_version": SCHEMA_VERSION,
            "patient_id": self.patient_id,
            "bin_ms": self.bin_ms,
            "window_shape": list(self.ring.shape),
            "channels": [c.value for c in WINDOW_CHANNELS],
            "watermark_ms": self.watermark_ms,
            "latest": {s.value: list(r) for s, r in sorted(self.latest.items())},
            "labs_issued_ms": {s.value: v for s, v in sorted(self.labs_issued_ms.items())},
            "artifacts": {s.value: list(a) for s, a in sorted(self.artifacts.items())},
            "artifact_count": self.artifact_count,
            "late_count": self.late_count,
            "ring": base64.b64encode(self.ring.astype("<f4").tobytes()).decode("ascii"),
            "closed_upto": self.closed_upto,
            "open_bins": [[k, *v] for k, v in sorted(self.open_bins.items())],
            "seen": [[k, v] for k, v in sorted(self.seen.items())],
            "demographics": _opt_list(self.demographics),
            "conditions": {c: list(v) for c, v in sorted(self.conditions.items())},
            "encounter_admit": _opt_list(self.encounter_admit),
            "encounter_discharge": _opt_list(self.encounter_discharge),
            "medications": {m: list(v) for m, v in sorted(self.medications.items())},
            "oxygen": _opt_list(self.oxygen),
            "spo2_target": _opt_list(self.spo2_target),
            "news2_total": self.news2_total,
            "news2_band": self.news2_band,
            "news2_points": dict(sorted(self.news2_points.items())),
            "news2_missing": list(self.news2_missing),
            "qsofa_total": self.qsofa_total,
            "qsofa_points": dict(sorted(self.qsofa_points.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwinState:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise TwinError(f"twin state schema {version!r} is not {SCHEMA_VERSION}; migrate it")
        if list(data["channels"]) != [c.value for c in WINDOW_CHANNELS]:
            raise TwinError("twin state window channels differ from this version's channels")
        n_ch, n_bins = data["window_shape"]
        st = cls(data["patient_id"], TwinConfig(bin_s=data["bin_ms"] // 1000, window_bins=n_bins))
        st.bin_ms = data["bin_ms"]
        st.watermark_ms = data["watermark_ms"]
        st.latest = {Signal(k): (v[0], v[1], v[2]) for k, v in data["latest"].items()}
        st.labs_issued_ms = {Signal(k): v for k, v in data["labs_issued_ms"].items()}
        st.artifacts = {Signal(k): (v[0], v[1], v[2], v[3]) for k, v in data["artifacts"].items()}
        st.artifact_count = data["artifact_count"]
        st.late_count = data["late_count"]
        raw = base64.b64decode(data["ring"])
        ring = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        st.ring = ring.reshape(n_ch, n_bins).copy()
        st.closed_upto = data["closed_upto"]
        st.open_bins = {k: (s, c) for k, s, c in data["open_bins"]}
        st.seen = dict(data["seen"])
        st.demographics = _opt_tuple(data["demographics"])
        st.conditions = {c: (v[0], v[1], v[2]) for c, v in data["conditions"].items()}
        st.encounter_admit = _opt_tuple(data["encounter_admit"])
        st.encounter_discharge = _opt_tuple(data["encounter_discharge"])
        st.medications = {m: (v[0], v[1], v[2], v[3], v[4]) for m, v in data["medications"].items()}
        st.oxygen = _opt_tuple(data["oxygen"])
        st.spo2_target = _opt_tuple(data["spo2_target"])
        st.news2_total = data["news2_total"]
        st.news2_band = data["news2_band"]
        st.news2_points = dict(data["news2_points"])
        st.news2_missing = tuple(data["news2_missing"])
        st.qsofa_total = data["qsofa_total"]
        st.qsofa_points = dict(data["qsofa_points"])
        return st

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TwinState:
        return cls.from_dict(json.loads(data))

    def copy(self) -> TwinState:
        # Slot by slot, written out: a getattr/setattr loop over the slots (and a list to copy
        # per open bin) cost three times as much, and the Kafka worker copies a twin for every
        # minute of samples it folds. The transition mutates the dicts and the ring in place, so
        # a copy owns its own; tuples and the score dicts (always replaced whole) are shared.
        new = TwinState.__new__(TwinState)
        new._valid_until_ms = self._valid_until_ms
        new.artifact_count = self.artifact_count
        new.artifacts = self.artifacts.copy()
        new.bin_ms = self.bin_ms
        new.closed_upto = self.closed_upto
        new.conditions = self.conditions.copy()
        new.demographics = self.demographics
        new.encounter_admit = self.encounter_admit
        new.encounter_discharge = self.encounter_discharge
        new.labs_issued_ms = self.labs_issued_ms.copy()
        new.late_count = self.late_count
        new.latest = self.latest.copy()
        new.medications = self.medications.copy()
        new.news2_band = self.news2_band
        new.news2_missing = self.news2_missing
        new.news2_points = self.news2_points
        new.news2_total = self.news2_total
        new.open_bins = self.open_bins.copy()
        new.oxygen = self.oxygen
        new.patient_id = self.patient_id
        new.qsofa_points = self.qsofa_points
        new.qsofa_total = self.qsofa_total
        new.ring = self.ring.copy()
        new.seen = self.seen.copy()
        new.spo2_target = self.spo2_target
        new.watermark_ms = self.watermark_ms
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwinState):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]  # mutable: equal states must not hash

    def __repr__(self) -> str:
        return (
            f"TwinState(watermark_ms={self.watermark_ms}, news2={self.news2_total}"
            f" {self.news2_band}, signals={len(self.latest)})"
        )


def bin_value(signal: Signal, total: int, count: int) -> float:
    """The value a bin reports: the mean of its samples, or their sum for counted signals."""
    if signal is Signal.STEPS:
        return total / FIXED_POINT
    return total / (count * FIXED_POINT) if count else math.nan


def _opt_list(value: tuple[Any, ...] | None) -> list[Any] | None:
    return None if value is None else list(value)


def _opt_tuple(value: list[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)
