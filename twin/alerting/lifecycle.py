"""The alert lifecycle step: ``evaluate(book, state, now_ms, policy, forecast) -> (book, out)``.

Per rule and patient::

    (none) --condition holds--> pending --held pending_for_s--> firing <--> acknowledged
       ^                          |                               |
       +----condition fails-------+      condition false for resolve_after_s
                                                                  v
                                                              resolved (kept in history)

Notifications are decided after every rule has moved, from the new states:

- a firing alert that is neither inhibited (another firing alert of this patient names its
  rule in ``inhibits``) nor silenced is sent once ("fired"), then again every
  ``repeat_interval_s`` while it stays firing and unacknowledged ("repeat");
- an alert that was muted when it fired is sent when it stops being muted, if still firing;
- a resolved alert is sent ("resolved") only if its firing was sent: receivers never hear
  of an episode that ends without having begun for them.

Time is ``now_ms`` (event time, usually the twin's watermark); it never goes backwards within a
book (an earlier ``now_ms`` is treated as the book's last time). Conditions are evaluated on
the state as handed in: between two calls the latest readings are assumed to hold (sample and
hold), which is exactly how the twin scores NEWS2. Call ``evaluate`` after each batch and on a
timer, so pending alerts fire and repeats go out when no new samples arrive.
"""

from __future__ import annotations

from twin.alerting.book import (
    FIRING_STATUSES,
    HISTORY_LIMIT,
    AlertBook,
    AlertRecord,
    ForecastRisk,
    Notification,
    NotificationReason,
    Why,
    alert_id,
    fingerprint,
    notification_id,
)
from twin.alerting.conditions import Inputs, explain, holds
from twin.alerting.policy import DEFAULT_POLICY, AlertError, AlertPolicy, Rule
from twin.state import TwinState


def new_book(patient_id: str) -> AlertBook:
    return AlertBook(patient_id=patient_id)


def evaluate(
    book: AlertBook | None,
    state: TwinState,
    now_ms: int,
    policy: AlertPolicy = DEFAULT_POLICY,
    forecast: ForecastRisk | None = None,
) -> tuple[AlertBook, list[Notification]]:
    """Advance one patient's alerts to ``now_ms``; ``book`` is left untouched."""
    pid = state.patient_id
    if book is None:
        book = new_book(pid)
    elif book.patient_id != pid:
        raise AlertError("alert book and twin state belong to different patients")
    now = max(now_ms, book.evaluated_at_ms)
    fc = book.forecast
    if forecast is not None and (fc is None or forecast.made_at_ms >= fc.made_at_ms):
        fc = forecast
    override = policy.override_for(pid)
    scale = override.spo2_scale if override and override.spo2_scale else state.spo2_scale
    inp = Inputs(state=state, now_ms=now, forecast=fc, spo2_scale=scale)
    rules = policy.rules_for(pid)
    if (
        not book.active
        and not book.silences
        and fc is book.forecast
        and len(book.history) <= HISTORY_LIMIT
        and not any(holds(rule, inp) for rule in rules)
    ):
        # Nothing open, nothing to open: all the general path below would change is the time.
        # The Kafka worker evaluates after every minute of event time, and most minutes of
        # most patients look like this.
        if now == book.evaluated_at_ms:
            return book, []
        return book.model_copy(update={"evaluated_at_ms": now}), []
    by_name = {r.name: r for r in rules}

    active: dict[str, AlertRecord] = {}
    resolved: list[tuple[AlertRecord, Rule | None]] = []
    for rule in rules:
        rec = _step(book.active.get(rule.name), rule, holds(rule, inp), inp, pid)
        if rec is None:
            continue
        if rec.status == "resolved":
            resolved.append((rec, rule))
        else:
            active[rule.name] = rec
    for name, rec in book.active.items():
        # The rule was removed or disabled (e.g. a new override): close its episode now.
        if name not in by_name and rec.status != "pending":
            closed = rec.model_copy(update={"status": "resolved", "resolved_at_ms": now})
            resolved.append((closed, None))

    out: list[Notification] = []
    firing = {n for n, r in active.items() if r.status in FIRING_STATUSES}
    inhibited = {t for n in firing for t in by_name[n].inhibits}
    silences = tuple(s for s in book.silences if s.ends_ms > now)
    ward = state.ward
    for rule in rules:
        rec = active.get(rule.name)
        if rec is None or rec.status not in FIRING_STATUSES:
            continue
        if rule.name in inhibited or any(s.mutes(rule.name, now) for s in silences):
            continue
        reason: NotificationReason | None = None
        if not rec.notified:
            reason = "fired"
        elif rec.status == "firing" and rule.repeat_interval_s is not None:
            last = rec.last_notified_ms
            if last is None or now - last >= rule.repeat_interval_s * 1000:
                reason = "repeat"
        if reason is None:
            continue
        why = rec.why if reason == "fired" and rec.why is not None else explain(rule, inp)
        out.append(_notification(rec, rule, reason, now, why, pid, ward))
        active[rule.name] = rec.model_copy(
            update={
                "notified": True,
                "last_notified_ms": now,
                "notifications": rec.notifications + 1,
            }
        )
    # Resolutions go first: they happened, and they may be what just un-muted a firing alert.
    resolved_out: list[Notification] = []
    history = list(book.history)
    for rec, maybe_rule in resolved:
        if rec.notified:
            evidence = explain(maybe_rule, inp) if maybe_rule is not None else rec.why
            assert evidence is not None  # a record that fired has its evidence
            resolved_out.append(
                _notification(rec, maybe_rule, "resolved", now, evidence, pid, ward)
            )
        history.append(rec)
    out = resolved_out + out
    new = book.model_copy(
        update={
            "evaluated_at_ms": now,
            "active": active,
            "history": tuple(history[-HISTORY_LIMIT:]),
            "silences": silences,
            "forecast": fc,
        }
    )
    return new, out


def _step(
    rec: AlertRecord | None, rule: Rule, cond: bool, inp: Inputs, pid: str
) -> AlertRecord | None:
    """One rule's lifecycle move. None: no open episode."""
    now = inp.now_ms
    if rec is None:
        if not cond:
            return None
        rec = AlertRecord(
            rule=rule.name,
            fingerprint=fingerprint(pid, rule.name),
            status="pending",
            severity=rule.severity,
            since_ms=now,
        )
    elif rec.status == "pending":
        if not cond:
            return None  # it must hold without a break to fire
    elif cond:
        if rec.false_since_ms is not None:
            rec = rec.model_copy(update={"false_since_ms": None})
    else:
        false_since = now if rec.false_since_ms is None else rec.false_since_ms
        if now - false_since >= rule.resolve_after_s * 1000:
            return rec.model_copy(
                update={"status": "resolved", "resolved_at_ms": now, "false_since_ms": false_since}
            )
        if rec.false_since_ms is None:
            rec = rec.model_copy(update={"false_since_ms": false_since})
    if rec.status == "pending" and now - rec.since_ms >= rule.pending_for_s * 1000:
        rec = rec.model_copy(
            update={
                "status": "firing",
                "fired_at_ms": now,
                "alert_id": alert_id(rec.fingerprint, now),
                "why": explain(rule, inp),
            }
        )
    return rec


def _notification(
    rec: AlertRecord,
    rule: Rule | None,
    reason: NotificationReason,
    now: int,
    why: Why,
    pid: str,
    ward: str | None,
) -> Notification:
    status = "resolved" if reason == "resolved" else "firing"
    assert rec.fired_at_ms is not None  # only fired alerts notify
    return Notification(
        notification_id=notification_id(rec.fingerprint, rec.alert_id, status, reason, now),
        alert_id=rec.alert_id,
        fingerprint=rec.fingerprint,
        patient_id=pid,
        ward=ward,
        rule=rec.rule,
        kind=why.kind,
        severity=rec.severity,
        status=status,
        reason=reason,
        at_ms=now,
        starts_at_ms=rec.fired_at_ms,
        ends_at_ms=now if status == "resolved" else None,
        acknowledged=rec.acknowledged_at_ms is not None,
        group_key=f"patient:{pid}",
        why=why,
        description=rule.description if rule is not None else "",
    )
