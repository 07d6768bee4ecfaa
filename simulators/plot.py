"""A patient's channels as a PNG, with onset, recognition, interventions and critical events.

Reporting is its own step: this reads a dataset directory written by ``DatasetWriter``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa

from simulators.cohort import COMORBIDITIES
from simulators.dataset import read_manifest, read_table
from simulators.errors import ConfigError

log = logging.getLogger(__name__)

# (title, signals on the panel, y unit)
PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Heart rate", ("heart_rate",), "/min"),
    ("SpO2", ("spo2",), "%"),
    ("Respiratory rate", ("respiratory_rate",), "/min"),
    ("Temperature", ("temperature",), "Cel"),
    ("Blood pressure", ("systolic_bp", "diastolic_bp"), "mm[Hg]"),
    ("CGM glucose", ("glucose",), "mg/dL"),
    ("Steps", ("steps",), "/min"),
)
_DRUG_COLOURS = {
    "antibiotic": "tab:green",
    "diuretic": "tab:blue",
    "steroid": "tab:olive",
    "insulin": "tab:purple",
    "glucose": "tab:pink",
    "vasopressor": "tab:brown",
    "oxygen": "tab:cyan",
}
_PLAUSIBLE = {
    "heart_rate": (20, 300),
    "spo2": (40, 100),
    "respiratory_rate": (2, 80),
    "temperature": (25, 45),
    "systolic_bp": (40, 300),
    "diastolic_bp": (15, 200),
    "glucose": (20, 700),
    "steps": (0, 400),
}


def _hour(t: datetime, t0: np.datetime64) -> float:
    return float((np.datetime64(t.replace(tzinfo=None), "ms") - t0) / np.timedelta64(1, "h"))


def _hours(
    ts: pa.ChunkedArray | pa.Array, t0: np.datetime64
) -> np.ndarray[Any, np.dtype[np.float64]]:
    arr = np.asarray(ts.to_numpy(zero_copy_only=False), dtype="datetime64[ms]")
    return np.asarray((arr - t0) / np.timedelta64(1, "h"), dtype=np.float64)


def plot_patient(dataset: str | Path, patient_id: str, out: str | Path) -> Path:
    """Write ``out`` (PNG) for ``patient_id`` of the dataset at ``dataset``; returns the path."""
    patients = read_table(dataset, "patients", patient_id=patient_id).to_pylist()
    if not patients:
        raise ConfigError(f"patient {patient_id!r} is not in {dataset}")
    info = patients[0]
    samples = read_table(dataset, "samples", patient_id=patient_id)
    labels = read_table(dataset, "labels", patient_id=patient_id).to_pylist()
    doses = read_table(dataset, "interventions", patient_id=patient_id).to_pylist()
    config = read_manifest(dataset)["config"]
    t0 = np.datetime64(datetime.fromisoformat(config["start"]).replace(tzinfo=None), "ms")
    horizon_h = float(config["days"]) * 24
    signal = np.asarray(samples.column("signal").to_numpy(zero_copy_only=False)).astype(str)
    hours = _hours(samples.column("observed_at"), t0)
    value = samples.column("value").to_numpy()
    artifact = np.asarray(samples.column("artifact").to_numpy(zero_copy_only=False)).astype(str)
    flagged = samples.column("flagged").to_numpy(zero_copy_only=False)
    panels = [p for p in PANELS if any((signal == s).any() for s in p[1])]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(14, 2.0 * len(panels) + 1.2), sharex=True, squeeze=False
    )
    for ax, (title, sigs, unit) in zip(axes[:, 0], panels, strict=True):
        for s in sigs:
            m = signal == s
            h, v, a, f = hours[m], value[m], artifact[m], flagged[m]
            lo, hi = _PLAUSIBLE[s]
            ok = (v >= lo) & (v <= hi) & (a != "impossible")
            clean = ok & (a == "none")
            # Break the line across gaps so dropouts show as gaps.
            hh, vv = h[ok], v[ok].astype(float)
            if hh.size > 1:
                step = np.median(np.diff(hh)) if hh.size > 2 else 1.0
                gap = np.diff(hh) > 3 * max(step, 1 / 60)
                vv = np.insert(vv, np.nonzero(gap)[0] + 1, np.nan)
                hh = np.insert(hh, np.nonzero(gap)[0] + 1, np.nan)
            style = "o-" if s in ("systolic_bp", "diastolic_bp") else "-"
            ax.plot(hh, vv, style, lw=0.6, ms=2.5, label=s.replace("_", " "))
            art = ok & ~clean
            ax.plot(h[art & f], v[art & f], "x", color="0.5", ms=3, label="artifact (flagged)")
            ax.plot(
                h[art & ~f], v[art & ~f], "x", color="red", ms=3, label="artifact (not flagged)"
            )
        ax.set_ylabel(f"{title}\n[{unit}]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        for ep in labels:
            for key, colour, style in (
                ("onset_at", "tab:orange", "--"),
                ("recognized_at", "tab:purple", ":"),
                ("critical_at", "red", "-"),
                ("died_at", "black", "-"),
            ):
                if ep[key] is not None:
                    ax.axvline(_hour(ep[key], t0), color=colour, ls=style, lw=1.2)
        for d in doses:
            x = _hour(d["at"], t0)
            ax.axvline(x, color=_DRUG_COLOURS.get(d["drug"], "0.3"), lw=0.6, alpha=0.5)
    top = axes[0, 0]
    seen: set[str] = set()
    for d in doses:
        x = _hour(d["at"], t0)
        if d["drug"] not in seen or d["drug"] in ("oxygen", "vasopressor"):
            top.annotate(
                f"{d['drug']} {d['dose']:g} {d['unit']}",
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=6,
                rotation=60,
                color=_DRUG_COLOURS.get(d["drug"], "0.3"),
                va="bottom",
            )
            seen.add(d["drug"])
    for ax in axes[:, 0]:
        handles, names = ax.get_legend_handles_labels()
        keep = {n: h for h, n in zip(handles, names, strict=True)}
        ax.legend(keep.values(), keep.keys(), fontsize=6, loc="upper right", ncols=3)
    axes[-1, 0].set_xlabel("hours since start")
    axes[-1, 0].set_xlim(0, max(horizon_h, 1.0))
    comorb = [c for c in COMORBIDITIES if info[c]]
    eps = "; ".join(
        f"{e['condition']} ({e['outcome']}, severity {e['severity']:.2f})" for e in labels
    )
    fig.suptitle(
        f"{patient_id}: {info['setting']}, {info['age']} y {info['sex']}, "
        f"{', '.join(comorb) or 'no listed comorbidity'}{' (SpO2 scale 2)' if info['hypercapnic'] else ''}\n"
        f"episodes: {eps or 'none (stable)'}   |   onset --, recognised :, critical red, death black",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    log.info("wrote %s", out)
    return out
