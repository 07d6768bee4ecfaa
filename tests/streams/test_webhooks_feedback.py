"""Clinician feedback: the alert store, ``vitaltwin alerts ...``, and the runtime's round trip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from test_webhooks_support import T0_MS

from streams.alert_store import AlertStore
from streams.commands import alerts as alerts_cmd
from twin import TwinState
from twin.alerting import AlertPolicy, News2BandRule, apply_command, evaluate

POLICY = AlertPolicy(rules=(News2BandRule(name="high", threshold=7, severity="critical"),))


def twin(total: int) -> TwinState:
    st = TwinState("pt-1")
    st.news2_total = total
    return st


def cli(db: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="vitaltwin")
    sub = parser.add_subparsers(dest="command", required=True)
    alerts_cmd.register(sub)
    args = parser.parse_args(["alerts", "--db", str(db), *argv])
    code: int = args.func(args)
    return code


@pytest.fixture
def fired(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "alerts.db"
    _, notes = evaluate(None, twin(8), T0_MS, POLICY)
    store = AlertStore(db)
    store.record_notifications(notes)
    store.record_notifications(notes)  # idempotent
    return db, notes[0].alert_id


def test_list_ack_and_audit(fired: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, alert = fired
    assert cli(db, "list", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["alert_id"], row["status"], row["notifications"]) == (alert, "firing", 1)
    assert cli(db, "ack", alert, "--by", "nurse.a", "--note", "on my way") == 0
    assert cli(db, "list", "--status", "acknowledged", "--json") == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("[") :])[0]["acknowledged_by"] == "nurse.a"
    assert cli(db, "ack", alert, "--by", "nurse.b") == 2  # already acknowledged
    assert "not firing" in capsys.readouterr().err
    assert (
        cli(db, "annotate", alert, "--by", "dr.c", "--label", "false_alarm", "--note", "motion")
        == 0
    )
    assert cli(db, "audit", "--alert", alert, "--json") == 0
    out = capsys.readouterr().out
    log = json.loads(out[out.index("[") :])
    assert [(e["action"], e["by"], e["outcome"]) for e in log] == [
        ("acknowledge", "nurse.a", "requested"),
        ("annotate", "dr.c", "requested"),
    ]


def test_cli_requires_who_and_an_existing_alert(
    fired: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, alert = fired
    monkeypatch.delenv("VITALTWIN_USER", raising=False)
    assert cli(db, "ack", alert) == 2
    assert "--by" in capsys.readouterr().err
    assert cli(db, "ack", "al_unknown", "--by", "x") == 2
    assert (
        cli(
            db,
            "silence",
            "--patient",
            "pt-1",
            "--until",
            "2026-01-05T10:00:00",
            "--by",
            "x",
            "--reason",
            "r",
        )
        == 2
    )
    assert "UTC offset" in capsys.readouterr().err


def test_runtime_applies_queued_commands_and_reports_back(fired: tuple[Path, str]) -> None:
    db, alert = fired
    assert cli(db, "ack", alert, "--by", "nurse.a") == 0
    assert (
        cli(
            db,
            "silence",
            "--patient",
            "pt-1",
            "--minutes",
            "30",
            "--by",
            "dr.b",
            "--reason",
            "procedure",
        )
        == 0
    )
    store = AlertStore(db)
    book, _ = evaluate(None, twin(8), T0_MS, POLICY)
    records = []
    for cmd in store.pending_commands("pt-1"):  # what the runtime does
        book, record = apply_command(book, cmd)
        records.append(record)
    store.record_applied(records, T0_MS)
    assert [r.outcome for r in records] == ["applied", "applied"]
    assert book.active["high"].status == "acknowledged"
    assert len(book.silences) == 1
    assert store.pending_commands() == []
    assert {e["outcome"] for e in store.audit_log()} == {"applied"}
    # The acknowledgement feeds evaluation: time to acknowledgement per episode.
    (episode,) = store.episodes()
    assert episode.acknowledged_at_ms is not None


def test_stats(fired: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = fired
    outcomes = tmp_path / "outcomes.json"
    outcomes.write_text(json.dumps({"pt-1": "2026-01-05T20:00:00+00:00"}))
    assert cli(db, "stats", "--outcomes", str(outcomes), "--patient-days", "2") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["high"]["ppv"] == 1.0
    assert report["high"]["alerts_per_patient_day"] == 0.5
