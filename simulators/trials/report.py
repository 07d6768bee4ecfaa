"""Reporting is its own step: the analysis as ``results.json`` and a self-contained HTML page.

The HTML embeds its figures as base64 PNGs (matplotlib ``Figure`` objects, no pyplot state):
Kaplan-Meier curves of the first critical event per arm, the cumulative share of episodes
treated over time, a forest plot of the primary endpoint's risk difference (overall and by
subgroup) for each comparison, and a CONSORT-style flow of counts.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

RESULTS = "results.json"
REPORT = "report.html"
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (``allow_nan=False`` never trips)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return clean(value.item())
    return value


def write_results(out: str | Path, result: dict[str, Any]) -> Path:
    path = Path(out) / RESULTS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean(result), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def km_figure(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for k, (arm, summary) in enumerate(result["arms"].items()):
        km = summary["km_critical"]
        colour = _COLOURS[k % len(_COLOURS)]
        ax.step(
            km["time_h"],
            km["survival"],
            where="post",
            color=colour,
            label=f"{arm} (n={summary['n']})",
        )
        ax.fill_between(km["time_h"], km["lo"], km["hi"], step="post", color=colour, alpha=0.12)
    cond = result["trial"]["endpoint_condition"]
    ax.set_xlabel("hours after enrolment")
    ax.set_ylabel("free of critical event")
    ax.set_title(f"Kaplan-Meier: first critical event ({cond})")
    low = min((min(s["km_critical"]["lo"]) for s in result["arms"].values()), default=0.0)
    ax.set_ylim(max(0.0, min(0.9, (low or 0.0) - 0.02)), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


def forest_figure(result: dict[str, Any]) -> Figure | None:
    comparisons = result["comparisons"]
    if not comparisons:
        return None
    primary = result["trial"]["primary"]
    blocks: list[tuple[str, list[tuple[str, dict[str, Any], str]]]] = []
    for cmp in comparisons:
        rows = [("overall", cmp[primary]["risk_difference"], "")]
        for sub in result["subgroups"]:
            if sub["arm"] == cmp["arm"] and sub["reference"] == cmp["reference"]:
                p = sub.get("heterogeneity_p")
                rows.append(
                    (
                        f"{sub['variable']} = {sub['level']}",
                        sub["risk_difference"],
                        "" if p is None else f"p_het {p:.2f}",
                    )
                )
        blocks.append((f"{cmp['arm']} vs {cmp['reference']}", rows))
    n_rows = sum(len(r) + 1 for _, r in blocks)
    fig = Figure(figsize=(7.5, 0.28 * n_rows + 1.2))
    ax = fig.add_subplot()
    y = 0
    ticks, labels = [], []
    for title, rows in blocks:
        ticks.append(-y)
        labels.append(title)
        y += 1
        for label, est, extra in rows:
            v, lo, hi = est.get("value"), est.get("lo"), est.get("hi")
            if v is not None:
                ax.plot(
                    [lo if lo is not None else v, hi if hi is not None else v],
                    [-y, -y],
                    color="black",
                    lw=1,
                )
                ax.plot([v], [-y], "s", color="tab:blue" if label != "overall" else "tab:red", ms=5)
            ticks.append(-y)
            labels.append(f"   {label}" + (f"  ({extra})" if extra else ""))
            y += 1
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel(f"risk difference, {primary} (arm - reference); left favours the arm")
    ax.set_title("Forest plot: primary endpoint overall and by subgroup")
    ax.grid(axis="x", alpha=0.3)
    return fig


def consort_figure(result: dict[str, Any]) -> Figure:
    c = result["consort"]
    arms = list(c["arms"])
    fig = Figure(figsize=(max(7.5, 2.6 * len(arms)), 5.2))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)

    def box(x: float, y: float, text: str, w: float = 0.3) -> None:
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=8,
            wrap=True,
            bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "black"},
        )

    reasons = "\n".join(f"{k}: {v}" for k, v in sorted(c["exclusion_reasons"].items())) or "none"
    box(0.5, 0.92, f"Assessed for eligibility (twins screened)\nn = {c['screened']}")
    box(0.85, 0.75, f"Excluded n = {c['excluded']}\n{reasons}")
    how = "Every twin runs under every arm (paired)" if c["design"] == "paired" else "Randomised"
    box(0.5, 0.62, f"Enrolled n = {c['enrolled']}\n{how}")
    ax.annotate("", xy=(0.5, 0.67), xytext=(0.5, 0.88), arrowprops={"arrowstyle": "->"})
    ax.annotate("", xy=(0.7, 0.75), xytext=(0.5, 0.75), arrowprops={"arrowstyle": "->"})
    for k, arm in enumerate(arms):
        a = c["arms"][arm]
        x = (k + 0.5) / len(arms)
        got = a["received_intervention"]
        lines = [f"{arm}", f"allocated {a['allocated']}"]
        if got is not None:
            lines.append(f"received regimen {got}")
        lines += [
            f"completed follow-up {a['completed_follow_up']}",
            f"discharged early {a['discharged_before_horizon']}",
            f"died {a['died']}",
            f"analysed {a['analysed']}",
        ]
        ax.annotate("", xy=(x, 0.40), xytext=(0.5, 0.57), arrowprops={"arrowstyle": "->"})
        box(x, 0.2, "\n".join(lines))
    ax.set_title("Flow of twins (CONSORT-style)")
    return fig


def treatment_figure(result: dict[str, Any]) -> Figure | None:
    """Share of episodes treated by hours after onset (1 - each arm's Kaplan-Meier)."""
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    shown = False
    for k, (arm, s) in enumerate(result["arms"].items()):
        t = s.get("time_to_treatment_h")
        if not t:
            continue
        km = t["km"]
        ax.step(
            km["time_h"],
            [1 - v for v in km["survival"]],
            where="post",
            color=_COLOURS[k % len(_COLOURS)],
            label=f"{arm} ({t['treated']} of {t['episodes']} episodes treated)",
        )
        shown = True
    if not shown:
        return None
    ax.set_xlabel("hours after onset")
    ax.set_ylabel("episodes treated (cumulative)")
    ax.set_ylim(0, 1)
    ax.set_title("Time to treatment")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _fmt(est: dict[str, Any] | None, pct: bool = False, digits: int = 3) -> str:
    if not est or est.get("value") is None:
        return "n/a"
    scale = 100 if pct else 1
    unit = " %" if pct else ""
    v = est["value"] * scale
    lo, hi = est.get("lo"), est.get("hi")
    if lo is None or hi is None:
        return f"{v:.{digits}g}{unit}"
    return f"{v:.{digits}g}{unit} ({lo * scale:.{digits}g} to {hi * scale:.{digits}g})"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(result: dict[str, Any]) -> str:
    t = result["trial"]
    ci = f"{100 * (1 - t['alpha']):g}% CI"
    arm_rows = []
    for arm, s in result["arms"].items():
        ttt = s.get("time_to_treatment_h", {}).get("median")
        arm_rows.append(
            [
                arm,
                str(s["n"]),
                _fmt(s["episode"], pct=True),
                _fmt(s["critical"], pct=True),
                _fmt(s["died"], pct=True),
                _fmt(ttt),
                _fmt(s.get("alerts_per_patient_day")),
                _fmt(s["overtreated"], pct=True),
                "n/a" if s["trial_doses_per_twin"] is None else f"{s['trial_doses_per_twin']:.2f}",
                f"{s['tir']['mean'] * 100:.1f} %" if "tir" in s else "n/a",
            ]
        )
    cmp_rows = []
    for c in result["comparisons"]:
        for ep in ("critical", "died"):
            e = c[ep]
            cmp_rows.append(
                [
                    f"{c['arm']} vs {c['reference']}",
                    e["label"],
                    f"{e['events'][0]} / {e['events'][1]}",
                    _fmt(e["risk_difference"], pct=True),
                    _p(e["risk_difference"].get("p")),
                    _fmt(e["relative_risk"]),
                    e["nnt"].get("text", "n/a"),
                ]
            )
    hr_rows = []
    for c in result["comparisons"]:
        tc = c["time_to_critical"]
        tt = c.get("time_to_treatment", {})
        ab = c["alert_burden"]
        hr_rows.append(
            [
                f"{c['arm']} vs {c['reference']}",
                _fmt(tc["hazard_ratio"]),
                _p(tc["logrank_p"]),
                _fmt(tt.get("hazard_ratio")),
                " / ".join("n/a" if x is None else f"{x:.2f}" for x in ab["alerts_per_twin"]),
                "n/a"
                if ab["extra_alerts_per_event_prevented"] is None
                else f"{ab['extra_alerts_per_event_prevented']:.1f}",
                _fmt(c.get("tir"), pct=True),
            ]
        )
    figures = [
        ("Kaplan-Meier", km_figure(result)),
        ("Time to treatment", treatment_figure(result)),
        ("Forest plot", forest_figure(result)),
        ("CONSORT", consort_figure(result)),
    ]
    imgs = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{_png(fig)}"></figure>'
        for name, fig in figures
        if fig is not None
    )
    arms_desc = "".join(
        f"<li><b>{html.escape(a['name'])}</b> ({html.escape(a['kind'])}"
        f"{', with usual care' if a['usual_care'] and a['kind'] != 'usual_care' else ''})"
        f"{': ' + html.escape(a['description']) if a['description'] else ''}</li>"
        for a in t["arms"]
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.get("notes", []))
    paired = (
        "paired (every twin under every arm, common random numbers)"
        if t["design"] == "paired"
        else "randomised"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(t["title"] or t["name"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
.small {{ color: #666; font-size: 0.85em; }}
</style></head><body>
<h1>{html.escape(t["title"] or t["name"])}</h1>
<p class="small">trial {html.escape(t["name"])} · spec digest {t["digest"]} · seed {t["seed"]} ·
{t["days"]:g} days · design {html.escape(paired)} · control {html.escape(t["control"])} ·
endpoint condition {html.escape(t["endpoint_condition"])} · primary {html.escape(t["primary"])}</p>
<p class="small">Simulated twins, not patients: model numbers are chosen, not fitted
(docs/simulator.md); read effects as properties of the simulator, not clinical evidence.</p>
<h2>Arms</h2><ul>{arms_desc}</ul>
{"<h2>Notes</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Per arm</h2>
{_table(["arm", "n", "episode", "critical event", "death", "median h to treatment", "alerts / patient-day", "treated without condition", "trial drug doses per twin", "glucose TIR"], arm_rows)}
<h2>Versus reference: binary endpoints ({ci})</h2>
{_table(["comparison", "endpoint", "events (arm / ref)", "risk difference", "p", "relative risk", "number needed to treat"], cmp_rows)}
<h2>Time to event, and the alert burden next to the benefit ({ci})</h2>
{_table(["comparison", "HR first critical event", "log-rank p", "HR treatment (>1 sooner)", "alerts per twin (arm / ref)", "extra alerts per event prevented", "TIR difference"], hr_rows)}
<h2>Figures</h2>
{imgs}
</body></html>
"""


def write_report(out: str | Path, result: dict[str, Any]) -> Path:
    path = Path(out) / REPORT
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(clean(result)))
    os.replace(tmp, path)
    return path


__all__ = ["clean", "render_html", "write_report", "write_results"]
