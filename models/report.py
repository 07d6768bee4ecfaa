"""The evaluation report: one self-contained HTML page (plots embedded as base64 PNGs).

Sections: targets met or not (with the numbers), forecast error by horizon against persistence,
interval coverage, deterioration discrimination against NEWS2 and persistence, calibration
curves, alerting at a matched rate (lead-time distribution, alerts per patient-day, utility),
subgroups, and fan charts for sample patients. Input: ``evaluation.evaluate`` results.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def calibration_plot(results: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, h in zip(axes, ("6h", "12h"), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for r in results:
            det = r["deterioration"].get(h)
            if not det:
                continue
            for key, style in (("calibration_tft", "-o"), ("calibration_persistence", ":s")):
                bins = det[key]["bins"]
                if bins:
                    ax.plot(
                        [b["p_mean"] for b in bins],
                        [b["observed"] for b in bins],
                        style,
                        ms=3,
                        label=f"{r['cohort']} {key.split('_')[1]}",
                    )
        ax.set_title(f"calibration, deterioration within {h}")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _png(fig)


def lead_time_plot(results: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    data, labels = [], []
    for r in results:
        for key in ("tft_6h", "persistence_6h", "news2>=5"):
            data.append(r["alerting"][key]["lead_times_h"] or [np.nan])
            labels.append(f"{r['cohort']}\n{key}")
    ax.boxplot(data, tick_labels=labels, showfliers=True)
    ax.set_ylabel("lead time before deterioration (h)")
    ax.set_title("lead time at the NEWS2>=5 alert rate")
    ax.tick_params(axis="x", labelsize=7)
    return _png(fig)


def mae_plot(r: dict[str, Any]) -> str:
    plt = _plt()
    mae = r["forecast"]["mae"]
    fig, axes = plt.subplots(1, len(mae), figsize=(3 * len(mae), 2.8), squeeze=False)
    for ax, (target, rows) in zip(axes[0], mae.items(), strict=True):
        hs = list(rows)
        ax.plot(hs, [rows[h]["tft"] for h in hs], "-o", ms=3, label="TFT median (anchored)")
        if all("network" in rows[h] for h in hs):
            net = [rows[h]["network"] for h in hs]
            ax.plot(hs, net, "--", lw=1, color="0.5", label="network alone")
        ax.plot(hs, [rows[h]["persistence"] for h in hs], ":s", ms=3, label="persistence")
        ax.set_title(target, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    axes[0][0].set_ylabel("MAE")
    return _png(fig)


def fan_plot(sample: dict[str, Any], step_h: float, quantiles: list[float]) -> str:
    plt = _plt()
    show = ["heart_rate", "respiratory_rate", "spo2", "systolic_bp"]
    fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 2.6))
    q = np.asarray(sample["quantiles"], dtype=float)
    actual = np.asarray(sample["actual"], dtype=float)
    hist = np.asarray(sample["history"], dtype=float)
    targets = sample["targets"]
    d = q.shape[1]
    e = hist.shape[1]
    tf = (np.arange(d) + 0.5) * step_h
    th = (np.arange(-e, 0) + 0.5) * step_h
    mid = len(quantiles) // 2
    for ax, name in zip(axes, show, strict=True):
        k = targets.index(name)
        ax.plot(th, hist[k], color="black", lw=1)
        for lo in range(mid):
            ax.fill_between(
                tf, q[k, :, lo], q[k, :, -1 - lo], color="tab:blue", alpha=0.15 + 0.1 * lo, lw=0
            )
        ax.plot(tf, q[k, :, mid], color="tab:blue", lw=1)
        ax.plot(tf, actual[k], "k.", ms=3)
        if sample.get("event_ms") is not None:
            ax.axvline((sample["event_ms"] - sample["origin_ms"]) / 3.6e6, color="red", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    risk = ", ".join(f"{p:.0%}" for p in sample["risk"])
    fig.suptitle(
        f"{sample['patient_id']} (risk by horizon: {risk}); red: deterioration", fontsize=9
    )
    return _png(fig)


def _table(rows: list[list[Any]], head: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return html.escape("—" if v is None else str(v))

    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def render(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    spec = meta.get("spec", {})
    step_h = spec.get("bin_s", 300) * spec.get("step_bins", 6) / 3600
    quantiles = spec.get("quantiles", [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98])
    parts = [
        "<!doctype html><meta charset='utf-8'><title>vitaltwin forecast evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px;margin:6px 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.no{color:#b00}.yes{color:#070}</style>",
        f"<h1>Forecast evaluation: {html.escape(str(meta.get('name', 'model')))}</h1>",
        f"<p>model spec {html.escape(str(meta.get('spec_hash')))}, trained on data "
        f"{html.escape(str(meta.get('data', {}).get('fingerprint')))}</p>",
    ]
    for r in results:
        parts.append(
            f"<h2>Cohort: {html.escape(r['cohort'])} "
            f"({r['patients']} patients, {r['windows']} forecasts)</h2>"
        )
        rows = []
        for name, t in r["targets"].items():
            met = t if isinstance(t, bool) else t.get("met")
            vals = (
                ""
                if isinstance(t, bool)
                else json.dumps({k: v for k, v in t.items() if k != "met"})
            )
            cls = "yes" if met else "no"
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td class='{cls}'>{met}</td>"
                f"<td>{html.escape(vals)}</td></tr>"
            )
        parts.append(
            "<h3>Targets</h3><table><tr><th>target</th><th>met</th><th>values</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        parts.append(f"<h3>Forecast error by horizon</h3><img src='{mae_plot(r)}'>")
        cov = r["forecast"]["coverage"]
        parts.append(
            _table(
                [[t, c["80"], c["96"]] for t, c in cov.items()],
                ["target", "80% interval coverage", "96% interval coverage"],
            )
        )
        det_rows = []
        for h, det in r["deterioration"].items():
            for k in ("tft", "persistence", "news2", "news2>=5", "news2>=7"):
                det_rows.append(
                    [h, k, det[k]["auroc"], det[k]["auprc"], det[k]["n"], det[k]["positives"]]
                )
        parts.append(
            "<h3>Deterioration</h3>"
            + _table(det_rows, ["horizon", "score", "AUROC", "AUPRC", "forecasts", "positives"])
        )
        al = r["alerting"]
        al_rows = [
            [
                k,
                al[k]["alert_rate"],
                al[k]["alerts_per_patient_day"],
                al[k]["events"],
                al[k]["events_alerted"],
                al[k]["median_lead_h"],
                al["utility"].get(k),
            ]
            for k in ("tft_6h", "persistence_6h", "news2>=5", "news2>=7")
        ]
        parts.append(
            "<h3>Alerting at the NEWS2&ge;5 alert rate</h3>"
            + _table(
                al_rows,
                [
                    "rule",
                    "alert rate",
                    "alerts/patient-day",
                    "events",
                    "alerted",
                    "median lead (h)",
                    "normalised utility",
                ],
            )
        )
        sub_rows = [
            [
                g,
                s["patients"],
                s["coverage_80"],
                s["auroc_6h"]["tft"],
                s["auroc_6h"]["news2"],
                s["auroc_6h"]["persistence"],
                s["calibration_6h_ece"],
                s["alerts_per_patient_day_tft"],
            ]
            for g, s in r["subgroups"].items()
        ]
        parts.append(
            "<h3>Subgroups</h3>"
            + _table(
                sub_rows,
                [
                    "subgroup",
                    "patients",
                    "80% coverage",
                    "AUROC 6h TFT",
                    "AUROC 6h NEWS2",
                    "AUROC 6h persistence",
                    "ECE 6h",
                    "alerts/patient-day TFT",
                ],
            )
        )
        for s in r["samples"]:
            parts.append(f"<img src='{fan_plot(s, step_h, quantiles)}'>")
    parts.append("<h2>Calibration</h2>" + f"<img src='{calibration_plot(results)}'>")
    parts.append("<h2>Lead time</h2>" + f"<img src='{lead_time_plot(results)}'>")
    return "\n".join(parts)


def write(results: list[dict[str, Any]], meta: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(
        json.dumps(
            {"model": {k: meta.get(k) for k in ("name", "spec_hash", "data")}, "cohorts": results},
            indent=1,
            allow_nan=False,
        )
        + "\n"
    )
    path = out / "report.html"
    path.write_text(render(results, meta))
    return path
