"""Helpers shared by the simulator tests (a uniquely named module: tests have no packages)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from simulators import ChunkResult
from simulators.devices import Artifact
from simulators.ehr import EhrKind
from twin.scores import news2
from twin.signals import Signal


def clean_series(chunk: ChunkResult, signal: Signal, row: int) -> tuple[np.ndarray, np.ndarray]:
    """(minutes, values) a twin would keep: sent, not flagged, plausible."""
    ch = chunk.channels[signal]
    k = int(np.searchsorted(ch.cols, row))
    if k >= ch.cols.size or ch.cols[k] != row:
        return np.zeros(0, np.int64), np.zeros(0)
    ok = ch.sent[k] & ~ch.flagged[k] & (ch.artifact[k] != Artifact.IMPOSSIBLE)
    return ch.times()[k][ok].astype(np.int64), ch.value[k][ok].astype(np.float64)


def news2_at(chunk: ChunkResult, row: int, minute: int) -> int | None:
    """NEWS2 from the medians of the last hour's observations (latest cuff/ACVPU/oxygen)."""
    values: dict[str, float] = {}
    for sig, name in (
        (Signal.HEART_RATE, "pulse"),
        (Signal.RESPIRATORY_RATE, "respiratory_rate"),
        (Signal.SPO2, "spo2"),
        (Signal.TEMPERATURE, "temperature"),
    ):
        t, v = clean_series(chunk, sig, row)
        win = (t > minute - 60) & (t <= minute)
        if not win.any():
            return None
        values[name] = float(np.median(v[win]))
    t, v = clean_series(chunk, Signal.SYSTOLIC_BP, row)
    before = (t <= minute) & (v > 0)
    if not before.any():
        return None
    values["systolic_bp"] = float(v[before][-1])
    ehr = chunk.ehr
    assert ehr is not None
    mine = (ehr.row == row) & (ehr.minute <= minute)
    acvpu = mine & (ehr.kind == EhrKind.CONSCIOUSNESS)
    level = int(ehr.value[acvpu][-1]) if acvpu.any() else 0
    o2 = mine & (ehr.kind == EhrKind.OXYGEN_FLOW)
    on_oxygen = bool(ehr.value[o2][-1] > 0) if o2.any() else False
    scale2 = bool(chunk.cohort.hypercapnic[row])
    return news2(
        on_oxygen=on_oxygen, consciousness=level, spo2_scale=2 if scale2 else 1, **values
    ).total


def minutes_of(chunk: ChunkResult, delta: timedelta) -> float:
    return delta / timedelta(minutes=1)
