"""Clinician feedback as pure transitions: ``apply_command(book, command) -> (book, audit)``.

Acknowledge, un-acknowledge, silence, un-silence and annotate arrive from the CLI or the API as
``AlertCommand`` records (who, when, what) and are applied to the patient's book by the
runtime. Each application returns an ``AuditRecord`` - also when the command is rejected (an
unknown alert, an alert already resolved): the audit log shows what was asked, not only what
changed. A command id the book has already applied is a no-op ("duplicate"), so commands can be
delivered at least once.

Effects on the lifecycle:

- acknowledge: a firing alert becomes acknowledged; repeats stop; the resolve is still sent.
- unacknowledge: back to firing, and a reminder goes out at the next evaluation (someone else
  must pick it up), then every repeat interval.
- silence: the patient's alerts for one rule (or all rules) are not sent in ``[starts, ends)``;
  their lifecycle goes on, so an alert still firing when the silence ends is sent then.
- annotate: a label ("false_alarm", "treated", ...) and free text; feeds PPV evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twin.alerting.book import (
    COMMAND_MEMORY,
    LABEL_LIMIT,
    SILENCE_LIMIT,
    AlertBook,
    AlertRecord,
    Silence,
)
from twin.events import derive_event_id

Action = Literal["acknowledge", "unacknowledge", "silence", "unsilence", "annotate"]
Label = Literal["false_alarm", "true_alarm", "treated", "escalated", "other"]
Outcome = Literal["applied", "rejected", "duplicate"]

MAX_SILENCE_MS = 7 * 86_400_000  # a longer silence is a policy change, not a silence


class AlertCommand(BaseModel):
    """A clinician's action on one patient's alerts. Times are epoch ms (event time)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    command_id: str = Field(default="", max_length=64)
    action: Action
    patient_id: str = Field(min_length=1, max_length=128)
    by: str = Field(min_length=1, max_length=128)
    at_ms: int
    alert_id: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)
    label: Label | None = None
    rule: str | None = Field(default=None, max_length=64)  # silence: None means every rule
    starts_ms: int | None = None
    ends_ms: int | None = None
    silence_id: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _complete(self) -> AlertCommand:
        needs_alert = self.action in ("acknowledge", "unacknowledge", "annotate")
        if needs_alert and not self.alert_id:
            raise ValueError(f"{self.action} needs alert_id")
        if self.action == "annotate" and self.label is None and not self.note:
            raise ValueError("annotate needs a label or a note")
        if self.action == "silence":
            if self.ends_ms is None or not self.note:
                raise ValueError("silence needs ends_ms and a note saying why")
            start = self.at_ms if self.starts_ms is None else self.starts_ms
            if not 0 < self.ends_ms - start <= MAX_SILENCE_MS:
                raise ValueError("a silence must end after it starts, within 7 days")
            object.__setattr__(self, "starts_ms", start)
        if self.action == "unsilence" and not self.silence_id:
            raise ValueError("unsilence needs silence_id")
        if not self.command_id:
            key = (self.action, self.patient_id, self.alert_id, self.silence_id, self.rule)
            digest = derive_event_id(*key, self.by, self.at_ms, self.label, self.note)
            object.__setattr__(self, "command_id", "cmd_" + digest[3:])
        return self


class AuditRecord(BaseModel):
    """Who did what, when, to which alert, and whether it took effect."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audit_id: str
    command_id: str
    action: Action
    patient_id: str
    by: str
    at_ms: int
    alert_id: str | None = None
    rule: str | None = None
    label: Label | None = None
    note: str | None = None
    outcome: Outcome
    detail: str = ""


def audit_id(command_id: str) -> str:
    return "au_" + derive_event_id("audit", command_id)[3:]


def apply_command(book: AlertBook, cmd: AlertCommand) -> tuple[AlertBook, AuditRecord]:
    """Apply one command; the returned audit record says whether and why it took effect."""
    if cmd.patient_id != book.patient_id:
        return book, _audit(cmd, None, "rejected", "command is for another patient")
    if cmd.command_id in book.applied_commands:
        return book, _audit(cmd, None, "duplicate", "already applied")
    outcome: Outcome
    if cmd.action == "silence":
        new, outcome, detail, rule = _silence(book, cmd), "applied", "", cmd.rule
    elif cmd.action == "unsilence":
        kept = tuple(s for s in book.silences if s.silence_id != cmd.silence_id)
        new, rule = book.model_copy(update={"silences": kept}), None
        if len(kept) != len(book.silences):
            outcome, detail = "applied", ""
        else:
            outcome, detail = "rejected", "no such silence"
    else:
        new, outcome, detail, rule = _on_alert(book, cmd)
    if outcome == "applied":
        remembered = (*new.applied_commands, cmd.command_id)[-COMMAND_MEMORY:]
        new = new.model_copy(update={"applied_commands": remembered})
    return new, _audit(cmd, rule, outcome, detail)


def _silence(book: AlertBook, cmd: AlertCommand) -> AlertBook:
    # All three are guaranteed by AlertCommand's validator.
    assert cmd.starts_ms is not None
    assert cmd.ends_ms is not None
    assert cmd.note
    silence = Silence(
        silence_id="si_" + cmd.command_id[4:],
        rule=cmd.rule,
        starts_ms=cmd.starts_ms,
        ends_ms=cmd.ends_ms,
        by=cmd.by,
        reason=cmd.note,
    )
    # Over the cap, the silence that ends first goes: the newest request always takes effect.
    kept = sorted((*book.silences, silence), key=lambda s: (s.ends_ms, s.silence_id))
    return book.model_copy(update={"silences": tuple(kept[-SILENCE_LIMIT:])})


def _on_alert(book: AlertBook, cmd: AlertCommand) -> tuple[AlertBook, Outcome, str, str | None]:
    rec = book.find(cmd.alert_id or "")
    if rec is None:
        detail = "no such alert (unknown, or resolved long ago)"
        if cmd.action == "annotate":
            # The audit log keeps the label even when the book has forgotten the alert.
            return book, "applied", detail, None
        return book, "rejected", detail, None
    if cmd.action == "annotate":
        labels = rec.labels if cmd.label is None else (*rec.labels, cmd.label)[-LABEL_LIMIT:]
        new = rec.model_copy(update={"labels": labels})
        return _replace(book, rec, new), "applied", "", rec.rule
    if cmd.action == "acknowledge":
        if rec.status != "firing":
            return book, "rejected", f"alert is {rec.status}, not firing", rec.rule
        new = rec.model_copy(
            update={
                "status": "acknowledged",
                "acknowledged_by": cmd.by,
                "acknowledged_at_ms": cmd.at_ms,
            }
        )
        return _replace(book, rec, new), "applied", "", rec.rule
    if rec.status != "acknowledged":
        return book, "rejected", f"alert is {rec.status}, not acknowledged", rec.rule
    new = rec.model_copy(
        update={
            "status": "firing",
            "acknowledged_by": None,
            "acknowledged_at_ms": None,
            "last_notified_ms": None,  # remind at the next evaluation
        }
    )
    return _replace(book, rec, new), "applied", "", rec.rule


def _replace(book: AlertBook, old: AlertRecord, new: AlertRecord) -> AlertBook:
    if book.active.get(old.rule) is old:
        return book.model_copy(update={"active": {**book.active, old.rule: new}})
    history = tuple(new if r is old else r for r in book.history)
    return book.model_copy(update={"history": history})


def _audit(cmd: AlertCommand, rule: str | None, outcome: Outcome, detail: str) -> AuditRecord:
    return AuditRecord(
        audit_id=audit_id(cmd.command_id),
        command_id=cmd.command_id,
        action=cmd.action,
        patient_id=cmd.patient_id,
        by=cmd.by,
        at_ms=cmd.at_ms,
        alert_id=cmd.alert_id,
        rule=rule or cmd.rule,
        label=cmd.label,
        note=cmd.note,
        outcome=outcome,
        detail=detail,
    )


def acknowledge(
    book: AlertBook, alert: str, *, by: str, at_ms: int, note: str | None = None
) -> tuple[AlertBook, AuditRecord]:
    cmd = AlertCommand(
        action="acknowledge",
        patient_id=book.patient_id,
        alert_id=alert,
        by=by,
        at_ms=at_ms,
        note=note,
    )
    return apply_command(book, cmd)


def unacknowledge(
    book: AlertBook, alert: str, *, by: str, at_ms: int, note: str | None = None
) -> tuple[AlertBook, AuditRecord]:
    cmd = AlertCommand(
        action="unacknowledge",
        patient_id=book.patient_id,
        alert_id=alert,
        by=by,
        at_ms=at_ms,
        note=note,
    )
    return apply_command(book, cmd)


def silence(
    book: AlertBook,
    *,
    rule: str | None,
    ends_ms: int,
    by: str,
    reason: str,
    at_ms: int,
    starts_ms: int | None = None,
) -> tuple[AlertBook, AuditRecord]:
    cmd = AlertCommand(
        action="silence",
        patient_id=book.patient_id,
        rule=rule,
        starts_ms=starts_ms,
        ends_ms=ends_ms,
        by=by,
        note=reason,
        at_ms=at_ms,
    )
    return apply_command(book, cmd)


def annotate(
    book: AlertBook,
    alert: str,
    *,
    by: str,
    at_ms: int,
    label: Label | None = None,
    note: str | None = None,
) -> tuple[AlertBook, AuditRecord]:
    cmd = AlertCommand(
        action="annotate",
        patient_id=book.patient_id,
        alert_id=alert,
        by=by,
        at_ms=at_ms,
        label=label,
        note=note,
    )
    return apply_command(book, cmd)
