"""The analysis of a trial's per-twin records: per arm, versus the reference, by subgroup.

``analyse(spec, records, plan_summary)`` returns a JSON-ready dict (``report.py`` renders it):

- per arm: risks of the binary endpoints (Wilson intervals), Kaplan-Meier of time to the first
  critical event and of time to treatment, alert burden (alerts per patient-day, Byar interval),
  treatment given without the condition, glucose time in range;
- per comparison (each arm against the control, or ``analysis.comparisons``): risk difference,
  relative risk and number needed to treat for critical events and death; the Cox hazard ratio
  of the first critical event (optionally adjusted) with the log-rank test; the hazard ratio of
  treatment among twins with an episode (above 1: treated sooner); the alert burden next to the
  benefit (extra alerts per primary event prevented); time-in-range difference;
- subgroups: the primary endpoint's risk difference within each level of each subgroup
  variable, with Cochran's Q test of heterogeneity.

Paired designs are analysed as paired: risk differences within twins; the marginal Cox hazard
ratio with a cluster-robust (twin) variance - the conditional, twin-stratified ratio is
degenerate under common random numbers whenever treatment never makes a twin worse; the
log-rank test stratified by twin. Randomised designs as two independent groups.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simulators.trials import stats as st
from simulators.trials.population import AGE_BANDS
from simulators.trials.spec import TrialSpec

BINARY = ("critical", "died")
KM_POINTS = 400


def _paired(spec: TrialSpec) -> bool:
    return spec.design.kind == "paired"


def _kind_label(endpoint: str) -> str:
    return {"critical": "first critical event", "died": "death (all-cause)"}.get(endpoint, endpoint)


def _km_dict(km: st.KaplanMeier, end_h: float) -> dict[str, Any]:
    """The curve at up to ``KM_POINTS`` steps, held to ``end_h`` (the last follow-up time)."""
    k = km.time.size
    idx = np.unique(np.linspace(0, k - 1, min(k, KM_POINTS)).round().astype(int))
    last = idx[-1]
    tail = [end_h] if end_h > km.time[last] else []
    return {
        "time_h": [round(float(x), 3) for x in km.time[idx]] + [round(t, 3) for t in tail],
        "survival": [round(float(x), 5) for x in km.survival[idx]]
        + [round(float(km.survival[last]), 5)] * len(tail),
        "lo": [round(float(x), 5) for x in km.lo[idx]] + [round(float(km.lo[last]), 5)] * len(tail),
        "hi": [round(float(x), 5) for x in km.hi[idx]] + [round(float(km.hi[last]), 5)] * len(tail),
        "at_risk": [int(x) for x in km.at_risk[idx]] + [0] * len(tail),
    }


def _design_matrix(df: pd.DataFrame, arm_col: pd.Series, adjust: tuple[str, ...]) -> np.ndarray:
    cols = [arm_col.to_numpy(np.float64)]
    for name in adjust:
        if name == "age_band":
            cols.append((df["age_band"] == "65-79").to_numpy(np.float64))
            cols.append((df["age_band"] == ">=80").to_numpy(np.float64))
        elif name == "sex":
            cols.append((df["sex"] == "female").to_numpy(np.float64))
        elif name == "setting":
            cols.append((df["setting"] == "home").to_numpy(np.float64))
        else:
            cols.append(df[name].to_numpy(np.float64))
    x = np.column_stack(cols)
    keep = [0] + [j for j in range(1, x.shape[1]) if np.ptp(x[:, j]) > 0]  # drop constants
    return x[:, keep]


def arm_summary(spec: TrialSpec, df: pd.DataFrame) -> dict[str, Any]:
    a = spec.analysis.alpha
    days = float(df["followup_h"].sum() / 24)
    out: dict[str, Any] = {
        "n": len(df),
        "twin_days": round(days, 2),
        "episode": st.proportion(df["episode"], a).to_dict(),
        "critical": st.proportion(df["critical"], a).to_dict(),
        "died": st.proportion(df["died"], a).to_dict(),
        "overtreated": st.proportion(df["overtreated"], a).to_dict(),
        "trial_doses_per_twin": round(float(df["trial_doses"].mean()), 4) if len(df) else None,
        "discharged": int(df["discharged"].sum()),
    }
    ep = df[df["episode"]]
    if len(ep):
        km = st.kaplan_meier(ep["to_treatment_h"], ep["treated"], a)
        out["time_to_treatment_h"] = {
            "episodes": len(ep),
            "treated": int(ep["treated"].sum()),
            "median": km.median().to_dict(),
            "treated_within": {f"{h}h": round(1 - km.at(h), 4) for h in (1, 3, 6, 12)},
            "km": _km_dict(km, float(ep["to_treatment_h"].max())),
        }
    km = st.kaplan_meier(df["to_critical_h"], df["critical"], a)
    out["km_critical"] = _km_dict(km, float(df["followup_h"].max()) if len(df) else 0.0)
    reactive = df[df["alerts"] >= 0]
    if len(reactive):
        rdays = float(reactive["followup_h"].sum() / 24)
        out["alerts_per_patient_day"] = st.poisson_rate(
            float(reactive["alerts"].sum()), rdays, a
        ).to_dict()
        out["notifications_per_patient_day"] = st.poisson_rate(
            float(reactive["notifications"].sum()), rdays, a
        ).to_dict()
        out["alerts_per_twin"] = round(float(reactive["alerts"].mean()), 4)
        out["courses_started"] = int(reactive["courses"].sum())
        out["answered_triggers"] = {
            "triggers": int(reactive["triggers"].sum()),
            "responses": int(reactive["responses"].sum()),
        }
    tir = df.loc[df["cgm_readings"] > 0, "tir"]
    if len(tir) >= 2:
        out["tir"] = {
            "twins": len(tir),
            "mean": round(float(tir.mean()), 5),
            "sd": round(float(tir.std(ddof=1)), 5),
        }
    return out


def _pair(
    spec: TrialSpec, records: pd.DataFrame, arm: str, ref: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    a = records[records["arm"] == arm].sort_values("twin").reset_index(drop=True)
    r = records[records["arm"] == ref].sort_values("twin").reset_index(drop=True)
    if _paired(spec) and not np.array_equal(a["twin"].to_numpy(), r["twin"].to_numpy()):
        raise ValueError(f"paired arms {arm} and {ref} hold different twins")
    return a, r


def compare(spec: TrialSpec, a: pd.DataFrame, r: pd.DataFrame) -> dict[str, Any]:
    """Arm ``a`` against reference ``r`` (paired when the design is)."""
    alpha = spec.analysis.alpha
    paired = _paired(spec)
    out: dict[str, Any] = {"paired": paired, "n": [len(a), len(r)]}
    for endpoint in BINARY:
        rd = st.risk_difference(a[endpoint], r[endpoint], paired=paired, alpha=alpha)
        out[endpoint] = {
            "label": _kind_label(endpoint),
            "events": [int(a[endpoint].sum()), int(r[endpoint].sum())],
            "risk_difference": rd.to_dict(),
            "relative_risk": st.relative_risk(
                a[endpoint], r[endpoint], paired=paired, alpha=alpha
            ).to_dict(),
            "nnt": st.nnt(rd),
        }
    both = pd.concat([a.assign(_arm=1.0), r.assign(_arm=0.0)], ignore_index=True)
    twins = both["twin"].to_numpy() if paired else None
    x = _design_matrix(both, both["_arm"], spec.analysis.adjust)
    fit = st.cox(both["to_critical_h"], both["critical"], x, cluster=twins)
    chi2, p = st.logrank(both["to_critical_h"], both["critical"], both["_arm"] > 0, twins)
    out["time_to_critical"] = {
        "hazard_ratio": st.hazard_ratio(fit, 0, alpha).to_dict(),
        "adjusted_for": list(spec.analysis.adjust),
        "robust_by_twin": paired,
        "converged": fit.converged,
        "note": "" if fit.converged else "not estimable (no events in one arm, or too few)",
        "events": fit.events,
        "logrank_chi2": round(chi2, 4),
        "logrank_p": p,
    }
    ep = both[both["episode"]]
    if paired:  # twins whose episode happened under both arms (the usual case: onsets are shared)
        counts = ep["twin"].value_counts()
        ep = ep[ep["twin"].isin(counts[counts == 2].index)]
    if len(ep) and ep["treated"].any():
        fit_t = st.cox(
            ep["to_treatment_h"],
            ep["treated"],
            ep["_arm"].to_numpy(),
            cluster=ep["twin"].to_numpy() if paired else None,
        )
        out["time_to_treatment"] = {
            "episodes": len(ep),
            "hazard_ratio": st.hazard_ratio(fit_t, 0, alpha).to_dict(),
            "note": "hazard of being treated: above 1 means treated sooner",
        }
    out["overtreated"] = st.risk_difference(
        a["overtreated"], r["overtreated"], paired=paired, alpha=alpha
    ).to_dict()
    # Arms without the pipeline in the loop have no alert count (None), and add no alerts.
    alerts_a = float(a.loc[a["alerts"] >= 0, "alerts"].mean()) if (a["alerts"] >= 0).any() else None
    alerts_r = float(r.loc[r["alerts"] >= 0, "alerts"].mean()) if (r["alerts"] >= 0).any() else None
    primary = spec.endpoints.primary
    rd_primary = out[primary]["risk_difference"]["value"]
    extra = (alerts_a or 0.0) - (alerts_r or 0.0)
    prevented = None
    if rd_primary is not None and rd_primary < 0 and extra > 0:
        prevented = round(extra / -rd_primary, 2)
    out["alert_burden"] = {
        "alerts_per_twin": [
            None if alerts_a is None else round(alerts_a, 4),
            None if alerts_r is None else round(alerts_r, 4),
        ],
        "extra_alerts_per_event_prevented": prevented,
        "primary": primary,
    }
    has_tir = (a["cgm_readings"] > 0) & (r["cgm_readings"] > 0) if paired else None
    if paired and has_tir is not None and int(has_tir.sum()) >= 2:
        out["tir"] = st.mean_difference(
            a.loc[has_tir, "tir"], r.loc[has_tir, "tir"], paired=True, alpha=alpha
        ).to_dict()
    elif not paired and (a["cgm_readings"] > 0).sum() >= 2 and (r["cgm_readings"] > 0).sum() >= 2:
        out["tir"] = st.mean_difference(
            a.loc[a["cgm_readings"] > 0, "tir"], r.loc[r["cgm_readings"] > 0, "tir"], alpha=alpha
        ).to_dict()
    return out


def _level_order(level: str) -> tuple[int, str]:
    bands = [label for _, _, label in AGE_BANDS]
    return (bands.index(level), level) if level in bands else (len(bands), level)


def subgroups(spec: TrialSpec, a: pd.DataFrame, r: pd.DataFrame) -> list[dict[str, Any]]:
    """The primary endpoint's risk difference within each subgroup level (with Cochran's Q)."""
    alpha, paired, primary = spec.analysis.alpha, _paired(spec), spec.endpoints.primary
    rows: list[dict[str, Any]] = []
    for var in spec.analysis.subgroups:
        levels = sorted(set(a[var].astype(str)) | set(r[var].astype(str)), key=_level_order)
        ests: list[st.Estimate] = []
        block: list[dict[str, Any]] = []
        for level in levels:
            ma, mr = a[var].astype(str) == level, r[var].astype(str) == level
            if paired:
                mr = ma  # the same twins, the same covariates
            if ma.sum() < 2 or mr.sum() < 2:
                continue
            rd = st.risk_difference(
                a.loc[ma, primary], r.loc[mr, primary], paired=paired, alpha=alpha
            )
            ests.append(rd)
            block.append(
                {
                    "variable": var,
                    "level": level,
                    "n": [int(ma.sum()), int(mr.sum())],
                    "events": [int(a.loc[ma, primary].sum()), int(r.loc[mr, primary].sum())],
                    "risk_difference": rd.to_dict(),
                }
            )
        p = st.heterogeneity(ests)
        for row in block:
            row["heterogeneity_p"] = None if not math.isfinite(p) else p
        rows.extend(block)
    return rows


def _received(spec: TrialSpec, arm: str, df: pd.DataFrame) -> int | None:
    """Twins the arm's regimen reached (None for usual care and no treatment)."""
    kind = spec.arm(arm).kind
    if kind in ("signal_rule", "monitoring"):
        return int((df["courses"] > 0).sum())
    if kind in ("protocol", "schedule"):
        return int((df["trial_doses"] > 0).sum())
    return None


def consort(spec: TrialSpec, records: pd.DataFrame, plan: dict[str, Any]) -> dict[str, Any]:
    arms = {}
    for arm in spec.arm_names:
        df = records[records["arm"] == arm]
        horizon = spec.days * 24
        arms[arm] = {
            "allocated": int(plan["allocated"].get(arm, len(df))),
            "received_intervention": _received(spec, arm, df),
            "completed_follow_up": int(((df["followup_h"] >= horizon - 1e-9) & ~df["died"]).sum()),
            "discharged_before_horizon": int(df["discharged"].sum()),
            "died": int(df["died"].sum()),
            "analysed": len(df),
        }
    return {
        "screened": plan["screened"],
        "excluded": plan["screened"] - plan["enrolled"],
        "exclusion_reasons": plan["excluded"],
        "enrolled": plan["enrolled"],
        "design": plan["design"],
        "arms": arms,
    }


def analyse(
    spec: TrialSpec,
    records: pd.DataFrame,
    plan: dict[str, Any],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "trial": {
            "name": spec.name,
            "title": spec.title,
            "seed": spec.seed,
            "days": spec.days,
            "design": spec.design.kind,
            "control": spec.design.control,
            "endpoint_condition": spec.endpoints.condition,
            "primary": spec.endpoints.primary,
            "alpha": spec.analysis.alpha,
            "digest": spec.digest(),
            "arms": [
                {
                    "name": arm.name,
                    "kind": arm.kind,
                    "description": arm.description,
                    "usual_care": spec.uses_usual_care(arm),
                }
                for arm in spec.arms
            ],
        },
        "consort": consort(spec, records, plan),
        "arms": {arm: arm_summary(spec, records[records["arm"] == arm]) for arm in spec.arm_names},
        "comparisons": [],
        "subgroups": [],
        "notes": list(notes or []),
    }
    for arm, ref in spec.comparisons():
        a, r = _pair(spec, records, arm, ref)
        cmp = compare(spec, a, r)
        result["comparisons"].append({"arm": arm, "reference": ref, **cmp})
        for row in subgroups(spec, a, r):
            result["subgroups"].append({"arm": arm, "reference": ref, **row})
    return result
