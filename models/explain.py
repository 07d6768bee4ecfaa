"""Per-forecast explanations from the TFT's own interpretable parts, cheap enough for every alert.

The TFT computes variable-selection weights (how much each input contributed to the
representation: static inputs once, history inputs per encoder step) and attention over the
history; both come out of the same forward pass as the forecast. An explanation keeps

- the ``top_k`` inputs by weight: history inputs averaged over the encoder steps (they sum
  to 1 over history inputs) and static inputs (they sum to 1 over statics), each tagged with
  its group, so "history: spo2 0.41" reads as "41 % of the history representation";
- where in time the model attended: the encoder step with the largest attention averaged over
  heads and forecast steps, reported as hours before the forecast origin.

``pytorch_forecasting``'s ``interpret_output`` aggregates the same tensors over a batch for
plots; here they stay per patient (``tests/models/test_explain.py`` checks they agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import FeatureSpec
from models.records import build_frozen

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Explanation:
    top: tuple[tuple[str, str, float], ...]  # (group, variable, weight), strongest first
    attention_peak_h: float  # hours before the origin the model attended to most
    attention_peak_weight: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "top": [{"group": g, "variable": v, "weight": w} for g, v, w in self.top],
            "attention_peak_h": self.attention_peak_h,
            "attention_peak_weight": self.attention_peak_weight,
        }


def encoder_variable_names(spec: FeatureSpec) -> list[str]:
    """The TFT's encoder variable order: known reals (with relative time) then unknown reals."""
    return [*spec.known_reals, "relative_time_idx", *spec.unknown_reals]


def importances(static_weights: F32, encoder_weights: F32, spec: FeatureSpec) -> tuple[F32, F32]:
    """Per patient: static weights ``[N, S]`` and history weights averaged over time ``[N, V]``."""
    static = static_weights.reshape(static_weights.shape[0], -1)
    enc = encoder_weights.reshape(encoder_weights.shape[0], encoder_weights.shape[1], -1)
    return static, enc.mean(axis=1)


def explain(
    static_weights: F32,
    encoder_weights: F32,
    encoder_attention: F32,
    spec: FeatureSpec,
    top_k: int = 5,
) -> list[Explanation]:
    """One ``Explanation`` per row of the raw outputs ``static_variables``, ``encoder_variables``
    ``[N, E, 1, V]`` and ``encoder_attention`` ``[N, D, heads, E]``."""
    static, hist = importances(static_weights, encoder_weights, spec)
    weights = np.concatenate([static, hist], axis=1)
    order = np.argsort(-weights, axis=1, kind="stable")[:, :top_k]
    att = encoder_attention.mean(axis=(1, 2))  # [N, E]
    peak = att.argmax(axis=1)
    e = att.shape[1]
    step_h = spec.step_s / 3600
    # Rounded in one call per array, not by round() per element (a third of the records'
    # cost). Equal to Python's round(w, 4) for float32 weights: w * 1e4 is exact in float64
    # (24 + 14 bits), so rint sees the same value round() does, half to even alike, and the
    # division by 1e4 is correctly rounded as round()'s result is.
    n, k = order.shape
    rows = np.arange(n)
    top_w = _round4(weights[rows[:, None], order]).ravel().tolist()
    peak_w = _round4(att[rows, peak]).tolist()
    # (e - p - 0.5) * step_h per row, in float64 as Python computes it (e - p is exact)
    peak_h = ((e - peak - 0.5) * step_h).tolist()
    groups, variables = _name_columns(spec)
    # Every row's (group, variable, weight) triples in one C-level zip, cut into rows of k by
    # zipping k references to one iterator: no Python step per weight.
    triples = zip(
        groups[order].ravel().tolist(), variables[order].ravel().tolist(), top_w, strict=True
    )
    tops = list(zip(*[iter(triples)] * k, strict=True)) if k else [()] * n
    return [
        build_frozen(Explanation, {"top": top, "attention_peak_h": h, "attention_peak_weight": w})
        for top, h, w in zip(tops, peak_h, peak_w, strict=True)
    ]


def _round4(weights: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """``round(float(w), 4)`` of each weight (``explain`` says why numpy's equals it)."""
    if weights.dtype == np.float32:
        return weights.astype(np.float64).round(4)
    # wider floats: w * 1e4 may round, and rint could then see another value than round()
    flat = [round(w, 4) for w in weights.ravel().tolist()]
    return np.array(flat, dtype=np.float64).reshape(weights.shape)


@cache
def _names(spec: FeatureSpec) -> tuple[tuple[str, str], ...]:
    """(group, variable) of each column of ``explain``'s weights: statics, then history."""
    return (
        *(("static", n) for n in spec.static_reals),
        *(("history", n) for n in encoder_variable_names(spec)),
    )


@cache
def _name_columns(spec: FeatureSpec) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """``_names`` as two object arrays (groups, variables), to gather by ``explain``'s order."""
    names = _names(spec)
    groups = np.empty(len(names), dtype=object)
    variables = np.empty(len(names), dtype=object)
    groups[:] = [g for g, _ in names]
    variables[:] = [v for _, v in names]
    return groups, variables
