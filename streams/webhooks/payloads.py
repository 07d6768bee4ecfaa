"""Webhook bodies: vitaltwin's own JSON and the Prometheus Alertmanager v4 webhook shape.

Both are *thin* by default: the pseudonymous patient token (never a name, MRN or date of
birth: ingress replaced those), alert and notification ids, rule, severity, status, scores, the
forecast summary and its explanation, and links back to vitaltwin. ``detail="full"`` adds the
ward and the raw values behind the scores, for receivers inside the hospital network.

A body holds the notifications of one group (one patient) from one evaluation, in order.
Bodies are canonical JSON (sorted keys, no spaces), so a re-built message is byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from twin.alerting import Notification
from twin.events import from_ms

AM_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt for a firing alert


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


def _link(external_url: str | None, alert_id: str) -> str | None:
    if not external_url:
        return None
    return f"{external_url.rstrip('/')}/alerts/{quote(alert_id)}"


def _alert(note: Notification, detail: str, external_url: str | None) -> dict[str, Any]:
    why = note.why
    fc = why.forecast
    alert: dict[str, Any] = {
        "alert_id": note.alert_id,
        "notification_id": note.notification_id,
        "fingerprint": note.fingerprint,
        "rule": note.rule,
        "kind": note.kind,
        "severity": note.severity.value,
        "status": note.status,
        "reason": note.reason,
        "acknowledged": note.acknowledged,
        "at": _iso(note.at_ms),
        "starts_at": _iso(note.starts_at_ms),
        "ends_at": None if note.ends_at_ms is None else _iso(note.ends_at_ms),
        "scores": {
            "news2_total": why.news2_total,
            "news2_band": why.news2_band,
            "news2_points": why.news2_points,
            "news2_missing": list(why.news2_missing),
            "qsofa_total": why.qsofa_total,
            "spo2_scale": why.spo2_scale,
        },
        "forecast": None
        if fc is None
        else {
            "horizon_h": fc.horizon_h,
            "probability": fc.probability,
            "threshold": fc.threshold,
            "outcome": fc.outcome,
            "model": fc.model,
            "made_at": _iso(fc.made_at_ms),
        },
        "explanation": {
            "summary": why.summary,
            "description": note.description,
            "threshold": why.threshold,
            "drivers": [] if fc is None else [d.model_dump() for d in fc.explanation],
        },
        "links": {"alert": _link(external_url, note.alert_id)},
    }
    if detail == "full":
        alert["ward"] = note.ward
        alert["values"] = why.values
        alert["observed_at"] = {k: _iso(v) for k, v in why.observed_at_ms.items()}
    return alert


def vitaltwin_body(
    notes: Sequence[Notification], *, detail: str = "thin", external_url: str | None = None
) -> dict[str, Any]:
    """``{"type", "timestamp", "data"}`` as Standard Webhooks recommends."""
    first = notes[0]
    status = "firing" if any(n.status == "firing" for n in notes) else "resolved"
    return {
        "type": f"vitaltwin.alert.{status}",
        "timestamp": _iso(max(n.at_ms for n in notes)),
        "data": {
            "version": 1,
            "group_key": first.group_key,
            "patient": first.patient_id,
            "status": status,
            "alerts": [_alert(n, detail, external_url) for n in notes],
        },
    }


def alertmanager_body(
    notes: Sequence[Notification],
    *,
    receiver: str,
    detail: str = "thin",
    external_url: str | None = None,
) -> dict[str, Any]:
    """Prometheus Alertmanager webhook payload, version 4."""
    alerts: list[dict[str, Any]] = []
    label_sets: list[dict[str, str]] = []
    annotation_sets: list[dict[str, str]] = []
    for n in notes:
        labels = {
            "alertname": n.rule,
            "severity": n.severity.value,
            "patient": n.patient_id,
            "rule_kind": n.kind,
        }
        if detail == "full" and n.ward:
            labels["ward"] = n.ward
        why = n.why
        annotations = {
            "summary": why.summary,
            "description": n.description,
            "alert_id": n.alert_id,
            "news2_total": str(why.news2_total),
            "news2_band": why.news2_band,
            "qsofa_total": str(why.qsofa_total),
        }
        if why.forecast is not None:
            annotations["forecast_probability"] = f"{why.forecast.probability:.4f}"
            annotations["forecast_horizon_h"] = f"{why.forecast.horizon_h:g}"
        label_sets.append(labels)
        annotation_sets.append(annotations)
        alerts.append(
            {
                "status": n.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": _iso(n.starts_at_ms),
                "endsAt": AM_ZERO_TIME if n.ends_at_ms is None else _iso(n.ends_at_ms),
                "generatorURL": _link(external_url, n.alert_id) or "",
                "fingerprint": n.fingerprint,
            }
        )
    group_labels = {"patient": notes[0].patient_id}
    common_labels = _common(label_sets)
    return {
        "version": "4",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if any(n.status == "firing" for n in notes) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common(annotation_sets),
        "externalURL": external_url or "",
        "alerts": alerts,
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
