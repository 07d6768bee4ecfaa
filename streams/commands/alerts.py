"""``vitaltwin alerts``: list alerts and act on them (acknowledge, silence, annotate), audited.

Every action is written to the alert store's audit log (who, when, what) and queued for the
runtime, which applies it to the patient's alert book; ``list`` shows an acknowledgement at
once. ``stats`` computes alerts per patient-day, PPV, lead time and time to acknowledgement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streams.alert_store import AlertStore
from streams.errors import StreamsError
from twin.alerting import AlertCommand, alert_metrics
from twin.events import from_ms, to_ms

ENV_DB = "VITALTWIN_ALERTS_DB"
ENV_USER = "VITALTWIN_USER"
DEFAULT_DB = "var/alerts.db"
LABELS = ("false_alarm", "true_alarm", "treated", "escalated", "other")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("alerts", help="list, acknowledge, silence, annotate alerts")
    parser.add_argument(
        "--db",
        type=Path,
        default=Path(os.environ.get(ENV_DB, DEFAULT_DB)),
        help=f"alert store (SQLite; env {ENV_DB}, default {DEFAULT_DB})",
    )
    actions = parser.add_subparsers(dest="alerts_action", required=True, metavar="ACTION")

    p = actions.add_parser("list", help="alerts, newest first")
    p.add_argument("--status", choices=("firing", "acknowledged", "resolved"))
    p.add_argument("--patient", help="pseudonymous patient token")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    for name, helptext in (("ack", "acknowledge"), ("unack", "withdraw an acknowledgement")):
        p = actions.add_parser(name, help=helptext)
        p.add_argument("alert_id")
        _who(p)
        p.add_argument("--note")
        p.set_defaults(func=_on_alert, action="acknowledge" if name == "ack" else "unacknowledge")

    p = actions.add_parser("annotate", help="label an alert (false alarm, treated, ...)")
    p.add_argument("alert_id")
    _who(p)
    p.add_argument("--label", choices=LABELS)
    p.add_argument("--note", help="free text")
    p.set_defaults(func=_on_alert, action="annotate")

    p = actions.add_parser("silence", help="mute a patient's alerts for a while")
    p.add_argument("--patient", required=True)
    p.add_argument("--rule", help="only this rule (default: every rule)")
    until = p.add_mutually_exclusive_group(required=True)
    until.add_argument("--minutes", type=float)
    until.add_argument("--until", help="end time, ISO 8601 with a UTC offset")
    _who(p)
    p.add_argument("--reason", required=True, help="why (kept in the audit log)")
    p.set_defaults(func=_silence)

    p = actions.add_parser("unsilence", help="end a silence early")
    p.add_argument("silence_id")
    p.add_argument("--patient", required=True)
    _who(p)
    p.set_defaults(func=_unsilence)

    p = actions.add_parser("audit", help="the audit log")
    p.add_argument("--alert", help="one alert's entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_audit)

    p = actions.add_parser("stats", help="alerts per patient-day, PPV, lead time, time to ack")
    p.add_argument(
        "--outcomes", type=Path, help='JSON {"patient token": onset ISO time or null, ...}'
    )
    p.add_argument("--patient-days", type=float, default=0.0)
    p.add_argument("--window-h", type=float, default=24.0)
    p.set_defaults(func=_stats)


def _who(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--by",
        default=os.environ.get(ENV_USER),
        help=f"who is acting (env {ENV_USER}); required",
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _out(text: str) -> None:
    # The command's output is its product: stdout, not logging.
    sys.stdout.write(text + "\n")


def _err(message: str) -> int:
    sys.stderr.write(f"vitaltwin alerts: {message}\n")
    return 2


def _store(args: argparse.Namespace) -> AlertStore:
    return AlertStore(args.db)


def _iso(ms: int | None) -> str:
    return "" if ms is None else from_ms(ms).isoformat(timespec="seconds")


def _list(args: argparse.Namespace) -> int:
    rows = _store(args).list_alerts(status=args.status, patient_id=args.patient, limit=args.limit)
    if args.json:
        _out(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        ack = f" ack by {r['acknowledged_by']}" if r["acknowledged_by"] else ""
        _out(
            f"{r['alert_id']}  {r['status']:<12} {r['severity']:<8} {r['rule']:<26}"
            f" {r['patient_id']}  since {_iso(r['starts_ms'])}{ack}\n    {r['summary']}"
        )
    if not rows:
        _out("no alerts")
    return 0


def _submit(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    if not args.by:
        return _err(f"say who is acting: --by NAME (or set {ENV_USER})")
    now = _now_ms()
    try:
        cmd = AlertCommand(by=args.by, at_ms=now, **fields)
    except ValidationError as exc:
        return _err(str(exc.errors(include_url=False)[0]["msg"]))
    try:
        audit = _store(args).submit(cmd, now)
    except StreamsError as exc:
        return _err(str(exc))
    _out(f"{cmd.action} recorded ({audit}); the runtime applies it to the alert book")
    return 0


def _on_alert(args: argparse.Namespace) -> int:
    store = _store(args)
    row = store.alert(args.alert_id)
    if row is None:
        return _err(f"no alert {args.alert_id} in {args.db}")
    if args.action == "acknowledge" and row["status"] != "firing":
        return _err(f"alert is {row['status']}, not firing")
    if args.action == "unacknowledge" and row["status"] != "acknowledged":
        return _err(f"alert is {row['status']}, not acknowledged")
    fields: dict[str, Any] = {
        "action": args.action,
        "patient_id": row["patient_id"],
        "alert_id": args.alert_id,
        "note": args.note,
    }
    if args.action == "annotate":
        if args.label is None and not args.note:
            return _err("annotate needs --label or --note")
        fields["label"] = args.label
    return _submit(args, fields)


def _silence(args: argparse.Namespace) -> int:
    now = _now_ms()
    if args.minutes is not None:
        ends = now + int(args.minutes * 60_000)
    else:
        try:
            end = datetime.fromisoformat(args.until)
        except ValueError:
            return _err("--until must be ISO 8601, e.g. 2026-01-05T18:00:00+00:00")
        if end.tzinfo is None:
            return _err("--until needs a UTC offset (naive times are ambiguous)")
        ends = to_ms(end)
    fields = {
        "action": "silence",
        "patient_id": args.patient,
        "rule": args.rule,
        "ends_ms": ends,
        "note": args.reason,
    }
    return _submit(args, fields)


def _unsilence(args: argparse.Namespace) -> int:
    fields = {"action": "unsilence", "patient_id": args.patient, "silence_id": args.silence_id}
    return _submit(args, fields)


def _audit(args: argparse.Namespace) -> int:
    rows = _store(args).audit_log(args.alert)
    if args.json:
        _out(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        what = " ".join(str(x) for x in (r["label"], r["note"]) if x)
        _out(
            f"{_iso(r['at_ms'])}  {r['by']:<16} {r['action']:<14} {r['alert_id'] or r['patient_id']}"
            f"  [{r['outcome']}] {what}"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    outcomes: dict[str, int | None] = {}
    if args.outcomes is not None:
        try:
            raw = json.loads(args.outcomes.read_text())
            outcomes = {
                p: None if t is None else to_ms(datetime.fromisoformat(t)) for p, t in raw.items()
            }
        except (OSError, ValueError, AttributeError) as exc:
            return _err(f"cannot read outcomes: {exc}")
    report = alert_metrics(
        _store(args).episodes(),
        outcomes=outcomes,
        patient_days=args.patient_days,
        window_h=args.window_h,
    )
    _out(json.dumps(report, indent=2))
    return 0
