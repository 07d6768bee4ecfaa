"""The forecaster plug of monitoring arms: ``risk(states, at_ms) -> probabilities by horizon``.

A ``RiskModel`` reads twin states - what the production twin core kept from the delivered
stream - and nothing else; it never sees the simulator. Two implementations:

- ``TftRisk``: the trained TFT through the production fast path (``models.fastpath``:
  features straight from twin states, ONNX or torch forward, the calibrated risk head). Needs a
  checkpoint directory (``models/checkpoints/default`` unless the spec names one).
- ``News2TrendRisk``: a stand-in that uses only pipeline outputs - the twin's NEWS2 and the
  trend of NEWS2 points recomputed from the twin's own 5-minute bins. It is a monotone,
  *uncalibrated* score in probability form, there so that forecast-triggered arms (and their
  tests) run without a trained model; results obtained with it say nothing about the TFT.

``load_risk_model`` builds the one a spec asks for; with ``fallback: news2_trend`` a TFT that
cannot be loaded is replaced by the stand-in and the substitution is reported, never hidden.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from simulators.trials.errors import TrialError
from simulators.trials.spec import ForecasterSpec
from twin import scores
from twin.signals import CHANNEL_INDEX, Signal
from twin.state import TwinState

F64 = npt.NDArray[np.float64]


@runtime_checkable
class RiskModel(Protocol):
    """Probability of deterioration within each of ``horizons_h`` hours, per twin."""

    @property
    def name(self) -> str: ...

    @property
    def horizons_h(self) -> tuple[float, ...]: ...

    def risk(self, states: Sequence[TwinState], at_ms: Sequence[int]) -> F64:
        """``[len(states), len(horizons_h)]`` probabilities for forecasts made at ``at_ms``."""
        ...


# ---- the stand-in ---------------------------------------------------------------------------

_HR, _RR, _SPO2, _TEMP, _SBP = (
    CHANNEL_INDEX[s]
    for s in (
        Signal.HEART_RATE,
        Signal.RESPIRATORY_RATE,
        Signal.SPO2,
        Signal.TEMPERATURE,
        Signal.SYSTOLIC_BP,
    )
)


def _points(means: F64, scale: int, on_oxygen: bool) -> int:
    """NEWS2 points of the binned vitals (HR, RR, SpO2, temperature, SBP); missing scores 0."""
    total = 0
    for ch, fn in (
        (_HR, scores.pulse_points),
        (_RR, scores.respiratory_rate_points),
        (_TEMP, scores.temperature_points),
        (_SBP, scores.systolic_bp_points),
    ):
        if math.isfinite(means[ch]):
            total += fn(float(means[ch]))
    if math.isfinite(means[_SPO2]):
        total += scores.spo2_points(float(means[_SPO2]), on_oxygen=on_oxygen, scale=scale)
    return total


def _window_means(values: npt.NDArray[np.float32], lo: int, hi: int) -> F64:
    """Per channel, the mean of bins ``[lo, hi)`` counted back from the newest (NaN if empty)."""
    n = values.shape[1]
    part = values[:, n - hi : n - lo].astype(np.float64)
    with np.errstate(invalid="ignore"):
        count = np.isfinite(part).sum(axis=1)
        total = np.nansum(part, axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class News2TrendRisk:
    """``logit p(h) = a + b NEWS2 + c max(trend, 0) + d ln h`` from the twin state alone.

    ``trend`` is the NEWS2 points of the last hour's bin means minus those of 3-6 hours ago
    (vitals only; consciousness and oxygen do not change the difference much). Coefficients
    are chosen so that NEWS2 5 and rising gives about 0.3 at 6 h; not fitted to anything.
    """

    horizons_h: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0, 12.0)
    intercept: float = -6.0
    per_point: float = 0.6
    per_trend_point: float = 0.5
    per_log_hour: float = 0.5
    name: str = "news2_trend (stand-in)"

    def risk(self, states: Sequence[TwinState], at_ms: Sequence[int]) -> F64:
        out = np.zeros((len(states), len(self.horizons_h)))
        log_h = np.log(np.asarray(self.horizons_h, dtype=np.float64))
        for i, st in enumerate(states):
            if st.watermark_ms < 0:
                continue
            values, _ = st.window()
            bins_per_h = 3_600_000 // st.bin_ms
            on_o2 = bool(st.on_oxygen)
            recent = _points(_window_means(values, 0, bins_per_h), st.spo2_scale, on_o2)
            before = _points(
                _window_means(values, 3 * bins_per_h, 6 * bins_per_h), st.spo2_scale, on_o2
            )
            trend = max(recent - before, 0)
            z = (
                self.intercept
                + self.per_point * st.news2_total
                + self.per_trend_point * min(trend, 6)
                + self.per_log_hour * log_h
            )
            out[i] = 1.0 / (1.0 + np.exp(-z))
        return out


# ---- the TFT ----------------------------------------------------------------------------------


class TftRisk:
    """The production TFT fast path over twin states (``models.fastpath.Forecaster``)."""

    def __init__(
        self, path: str | None = None, backend: str = "auto", threads: int | None = None
    ) -> None:
        from models import fastpath, registry  # local: models pulls in torch when it loads

        where = registry.DEFAULT_DIR if path is None else path
        self._fastpath = fastpath
        self._forecaster = fastpath.Forecaster.load(where, backend=backend, threads=threads)
        self.name = self._forecaster.name
        self.horizons_h = tuple(float(h) for h in self._forecaster.spec.risk_horizons_h)

    def risk(self, states: Sequence[TwinState], at_ms: Sequence[int]) -> F64:
        if not states:
            return np.zeros((0, len(self.horizons_h)))
        inputs = self._fastpath.features_from_states(states, self._forecaster.spec, at_ms)
        return np.asarray(self._forecaster.run(inputs).risk, dtype=np.float64)


def default_checkpoint() -> Path:
    """``models/checkpoints/default``, found without importing ``models`` (and torch)."""
    found = importlib.util.find_spec("models")
    base = Path(found.origin).parent if found and found.origin else Path("models")
    return base / "checkpoints" / "default"


def load_risk_model(spec: ForecasterSpec, threads: int | None = None) -> tuple[RiskModel, str]:
    """The risk model a spec asks for, and a note saying what was used (and why, if replaced)."""
    if spec.kind == "news2_trend":
        model: RiskModel = News2TrendRisk()
        return model, model.name
    where = spec.path or str(default_checkpoint())
    try:
        if not (Path(where) / "metadata.json").is_file():
            # Checked before importing models.fastpath, which imports torch (seconds).
            raise FileNotFoundError(f"no checkpoint at {where} (metadata.json is missing)")
        tft = TftRisk(where, spec.backend, threads)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if spec.fallback is None:
            raise TrialError(
                f"cannot load the TFT checkpoint at {where} ({reason}); train one"
                " (models.training) or set forecaster.fallback: news2_trend"
            ) from None
        fallback = News2TrendRisk()
        return fallback, f"{fallback.name}: the TFT at {where} could not be loaded ({reason})"
    return tft, tft.name
