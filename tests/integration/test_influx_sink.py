"""``streams.influx.InfluxSink`` against a real server that speaks the InfluxDB v2 write API.

Production runs InfluxDB 2.7, which cannot be installed on our machines (see
shared/reference/integrations.md). These tests write to QuestDB (``scripts/questdb.sh``), a real
server that accepts the same ``POST /api/v2/write?org=..&bucket=..&precision=ms`` line-protocol
requests the influxdb-client batching writer sends, and read the points back through QuestDB's
own SQL API (``/exec``). What is exercised: our line protocol (escaping, tags, field types,
millisecond event-time timestamps), the client's batching/HTTP path, error propagation out of
the client's callbacks, back-pressure. What is NOT exercised: Flux queries, tokens, orgs and
buckets — QuestDB ignores ``org``/``bucket``/``Authorization`` on this endpoint (no auth is
configured), and every measurement becomes a table named after it.

Idempotency. InfluxDB overwrites a point with the same measurement, tag set and timestamp; that
is what makes re-writing a batch after a crash harmless. QuestDB appends duplicates by default,
so ``questdb_tables`` creates each table up front as a WAL table with
``DEDUP UPSERT KEYS(timestamp, <every tag>)``: a row with the same designated timestamp and tag
values replaces the earlier one (last write wins), which mirrors InfluxDB's series semantics.
One difference remains: InfluxDB merges *fields* of an overwritten point, QuestDB replaces the
whole row; our writer always sends every field of a measurement, so it does not show here.
Tags arrive as SYMBOL columns; ILP names the designated timestamp column ``timestamp``.

QuestDB applies WAL transactions asynchronously: reads poll (with a timeout) until the table's
applied transaction catches up with its committed one, never a fixed sleep.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pytest

from streams.influx import SCHEMA, InfluxConfig, InfluxSink, InfluxWriteError, line, outcome_lines
from streams.pipeline import Outcome
from twin import TwinState, apply_many
from twin.effects import AlertCandidate, ScoreChanged
from twin.events import ConsciousnessAssessment, Event, OxygenTherapy, Quality, VitalSample
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
T0_MS = 1_767_600_000_000
POLL_TIMEOUT_S = 30.0
# QuestDB column types for the fields our writer sends (floats -> DOUBLE, ``...i`` -> LONG).
FIELD_TYPES = {
    "value": "DOUBLE",
    "news2": "LONG",
    "qsofa": "LONG",
    "count": "LONG",
    "band": "VARCHAR",
    **{f"p{q:02d}": "DOUBLE" for q in (2, 10, 25, 50, 75, 90, 98)},
    "probability": "DOUBLE",
    "lower": "DOUBLE",
    "upper": "DOUBLE",
}
TABLES = ("vitals", "scores", "alert_candidates", "dead_letters", "forecasts", "risk")

T = TypeVar("T")


# ------------------------------------------------------------------------------ QuestDB client


def exec_sql(base_url: str, sql: str) -> dict[str, Any]:
    """Run one statement through QuestDB's REST SQL API; raise with the server's message."""
    url = f"{base_url}/exec?{urllib.parse.urlencode({'query': sql})}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            result: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"QuestDB refused {sql!r}: {exc.read().decode()[:500]}") from None
    return result


def rows(base_url: str, sql: str) -> list[dict[str, Any]]:
    result = exec_sql(base_url, sql)
    names = [c["name"] for c in result["columns"]]
    return [dict(zip(names, r, strict=True)) for r in result["dataset"]]


def poll(fetch: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {POLL_TIMEOUT_S}s waiting for {what}: {value}")
        time.sleep(0.05)


def wait_applied(base_url: str, *tables: str) -> None:
    """Wait until every transaction committed to these WAL tables so far has been applied."""
    names = ", ".join(f"'{t}'" for t in tables)
    sql = (
        f"SELECT name, suspended, writerTxn, sequencerTxn FROM wal_tables() WHERE name IN ({names})"
    )
    target = {r["name"]: r["sequencerTxn"] for r in rows(base_url, sql)}

    def caught_up(current: list[dict[str, Any]]) -> bool:
        assert not any(r["suspended"] for r in current), f"WAL apply suspended: {current}"
        return all(r["writerTxn"] >= target[r["name"]] for r in current)

    poll(lambda: rows(base_url, sql), caught_up, f"WAL apply of {tables}")


def ts_ms(iso: str) -> int:
    """QuestDB's ISO timestamp (microseconds, ``Z``) as epoch milliseconds."""
    at = datetime.fromisoformat(iso)
    assert at.microsecond % 1000 == 0, f"sub-millisecond part in {iso}"
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def questdb_tables(questdb_url: str) -> str:
    """Create the measurement tables with InfluxDB-like overwrite semantics (module docstring)."""
    for measurement in TABLES:
        spec = SCHEMA[measurement]
        columns = [f"{tag} SYMBOL" for tag in spec["tags"]]
        columns += [f"{field} {FIELD_TYPES[field]}" for field in spec["fields"]]
        keys = ", ".join(("timestamp", *spec["tags"]))
        exec_sql(
            questdb_url,
            f"CREATE TABLE IF NOT EXISTS {measurement} ({', '.join(columns)}, timestamp TIMESTAMP)"
            f" TIMESTAMP(timestamp) PARTITION BY DAY WAL DEDUP UPSERT KEYS({keys})",
        )
        # A table an earlier ILP write auto-created has no DEDUP: turn it on (idempotent).
        exec_sql(questdb_url, f"ALTER TABLE {measurement} DEDUP ENABLE UPSERT KEYS({keys})")
    return questdb_url


def sink_for(url: str, **overrides: Any) -> InfluxSink:
    options: dict[str, Any] = {"flush_interval_ms": 100, **overrides}
    return InfluxSink(
        InfluxConfig(url=url, token="test-token", org="vitaltwin", bucket="vitaltwin", **options)
    )


def patient() -> str:
    """A fresh patient token per test: reruns against a kept data dir never see old points."""
    return f"vt-it-{uuid.uuid4().hex[:12]}"


def sample(pid: str, sig: Signal, value: float, ms: int, **kw: Any) -> VitalSample:
    return VitalSample(
        patient_id=pid,
        observed_at=T0 + timedelta(milliseconds=ms),
        code=SIGNAL_TO_LOINC[sig],
        value=value,
        unit=SIGNALS[sig].unit,
        device_id="dev",
        source="it",
        **kw,
    )


# (signal, value, ms after T0) of the readings that must be stored; ms precision on purpose.
GOOD = [
    (Signal.HEART_RATE, 72.0, 0),
    (Signal.SPO2, 97.0, 0),
    (Signal.RESPIRATORY_RATE, 16.0, 0),
    (Signal.TEMPERATURE, 36.8, 0),
    (Signal.SYSTOLIC_BP, 125.0, 0),
    (Signal.HEART_RATE, 128.0, 60_123),
    (Signal.SPO2, 89.0, 60_123),
    (Signal.RESPIRATORY_RATE, 27.0, 120_007),
]


def deteriorating(pid: str, offset: float) -> tuple[list[Event], list[tuple[str, float, int]]]:
    """Events of one patient getting worse, plus two artifacts; and the vitals expected back."""
    good = [(sig, value + offset, ms) for sig, value, ms in GOOD]
    events: list[Event] = [sample(pid, sig, value, ms) for sig, value, ms in good[:5]]
    events += [
        ConsciousnessAssessment(patient_id=pid, observed_at=T0, level=0),
        OxygenTherapy(patient_id=pid, observed_at=T0, on=False),
        sample(pid, Signal.HEART_RATE, 350.0, 30_000),  # implausible: an artifact
        sample(pid, Signal.SPO2, 96.0, 45_000, quality=Quality.ARTIFACT),  # device-flagged
    ]
    events += [sample(pid, sig, value, ms) for sig, value, ms in good[5:]]
    return events, [(sig.value, value, T0_MS + ms) for sig, value, ms in good]


def twin_outcome(pids: list[str]) -> tuple[Outcome, dict[str, TwinState]]:
    """A real micro-batch outcome: every patient's events folded through ``twin.apply_many``."""
    outcome = Outcome()
    states: dict[str, TwinState] = {}
    for n, pid in enumerate(pids):
        events, _ = deteriorating(pid, offset=float(n))
        state, effects = apply_many(None, events)
        assert state is not None
        outcome.parts.extend(events)
        outcome.effects.extend(effects)
        outcome.touched[pid] = states[pid] = state
    return outcome, states


def where_patients(pids: list[str]) -> str:
    return "patient IN (" + ", ".join(f"'{p}'" for p in pids) + ")"


def read_vitals(url: str, pids: list[str]) -> list[tuple[str, str, float, int]]:
    sql = f"SELECT patient, signal, value, timestamp FROM vitals WHERE {where_patients(pids)}"
    return sorted(
        (r["patient"], r["signal"], r["value"], ts_ms(r["timestamp"])) for r in rows(url, sql)
    )


def read_scores(url: str, pids: list[str]) -> list[tuple[str, str, int, int, int]]:
    sql = f"SELECT patient, band, news2, qsofa, timestamp FROM scores WHERE {where_patients(pids)}"
    return sorted(
        (r["patient"], r["band"], r["news2"], r["qsofa"], ts_ms(r["timestamp"]))
        for r in rows(url, sql)
    )


def read_alerts(url: str, pids: list[str]) -> list[tuple[str, str, str, int, int, int]]:
    sql = (
        "SELECT patient, rule, band, news2, qsofa, timestamp FROM alert_candidates "
        f"WHERE {where_patients(pids)}"
    )
    return sorted(
        (r["patient"], r["rule"], r["band"], r["news2"], r["qsofa"], ts_ms(r["timestamp"]))
        for r in rows(url, sql)
    )


def write_and_close(url: str, outcome: Outcome, states: dict[str, TwinState]) -> None:
    sink = sink_for(url)
    sink.write(outcome, states)
    sink.close()
    # the batch's points plus one pipeline-health point per write
    assert sink.written == len(outcome_lines(outcome)) + 1


# -------------------------------------------------------------------------------------- tests


def test_outcome_points_arrive_with_tags_values_and_event_time(questdb_tables: str) -> None:
    url = questdb_tables
    pids = [patient(), patient()]
    outcome, states = twin_outcome(pids)
    scores = [fx for fx in outcome.effects if isinstance(fx, ScoreChanged)]
    alerts = [fx for fx in outcome.effects if isinstance(fx, AlertCandidate)]
    assert {fx.band for fx in scores} >= {"routine", "high"}, "the batch must change scores"
    assert alerts, "the batch must raise alert candidates"

    write_and_close(url, outcome, states)

    # Every non-artifact reading, per patient and signal, at its event time to the millisecond.
    expected_vitals = sorted(
        (pid, sig, value, t)
        for n, pid in enumerate(pids)
        for sig, value, t in deteriorating(pid, offset=float(n))[1]
    )
    got = poll(
        lambda: read_vitals(url, pids), lambda v: len(v) >= len(expected_vitals), "vitals rows"
    )
    wait_applied(url, *TABLES)
    got = read_vitals(url, pids)
    assert got == expected_vitals
    # The artifacts (HR 350 at +30 s, device-flagged SpO2 at +45 s) are not stored.
    assert not [v for v in got if v[3] in (T0_MS + 30_000, T0_MS + 45_000)]
    assert not [v for v in got if v[2] in (350.0, 351.0)]

    # Scores: one point per (patient, time); later scores at the same instant overwrite earlier
    # ones, as in InfluxDB (same series and timestamp: last one wins).
    expected_scores = sorted(
        {
            (fx.patient_id, fx.at_ms): (
                fx.patient_id,
                fx.band,
                fx.news2_total,
                fx.qsofa_total,
                fx.at_ms,
            )
            for fx in scores
        }.values()
    )
    assert read_scores(url, pids) == expected_scores
    assert {s[1] for s in expected_scores} >= {"routine", "high"}
    assert max(s[2] for s in expected_scores) >= 7  # news2 really reached the high band

    expected_alerts = sorted(
        {
            (fx.patient_id, fx.rule, fx.at_ms): (
                fx.patient_id,
                fx.rule,
                fx.band,
                fx.news2_total,
                fx.qsofa_total,
                fx.at_ms,
            )
            for fx in alerts
        }.values()
    )
    assert read_alerts(url, pids) == expected_alerts


def test_rewriting_the_same_outcome_does_not_duplicate_points(questdb_tables: str) -> None:
    url = questdb_tables
    pids = [patient()]
    outcome, states = twin_outcome(pids)

    write_and_close(url, outcome, states)
    poll(lambda: read_vitals(url, pids), lambda v: len(v) == len(GOOD), "first write")
    wait_applied(url, *TABLES)
    vitals, scores, alerts = (
        read_vitals(url, pids),
        read_scores(url, pids),
        read_alerts(url, pids),
    )
    assert len(vitals) == len(GOOD)
    assert scores
    assert alerts

    # A redelivered batch (after a crash, before the offset commit) is written again.
    write_and_close(url, outcome, states)
    wait_applied(url, *TABLES)
    assert read_vitals(url, pids) == vitals
    assert read_scores(url, pids) == scores
    assert read_alerts(url, pids) == alerts

    # Same series and timestamp with a new value: overwritten in place, as in InfluxDB.
    pid, sig, _, t = vitals[0]
    sink = sink_for(url)
    sink.write_lines([line("vitals", {"patient": pid, "signal": sig}, {"value": 42.5}, t)])
    sink.close()
    wait_applied(url, "vitals")
    assert read_vitals(url, pids) == sorted([(pid, sig, 42.5, t), *vitals[1:]])


def test_server_rejection_is_raised_from_close_without_patient_data(questdb_url: str) -> None:
    pid = patient()
    sink = sink_for(questdb_url)
    # QuestDB answers 400 and quotes the offending field value; InfluxDB quotes the whole line.
    sink.write_lines([f"vitals,patient={pid},signal=heart_rate value={pid} {T0_MS}"])
    with pytest.raises(InfluxWriteError, match="400") as info:
        sink.close()
    assert pid not in str(info.value)


def test_error_status_from_the_server_is_raised_not_lost(questdb_url: str) -> None:
    # Not the write endpoint (a path prefix QuestDB does not serve): a non-retryable HTTP error.
    sink = sink_for(f"{questdb_url}/no-such-prefix")
    outcome, states = twin_outcome([patient()])
    sink.write(outcome, states)
    with pytest.raises(InfluxWriteError):
        sink.close()


def test_unreachable_server_is_raised_from_flush_after_retries(questdb_url: str) -> None:
    """Connection refused is retried (here 2 retries with a short backoff) and then raised."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = sink_for(
        f"http://127.0.0.1:{port}", timeout_ms=2_000, max_retries=2, retry_interval_ms=200
    )
    outcome, states = twin_outcome([patient()])
    sink.write(outcome, states)
    try:
        with pytest.raises(InfluxWriteError):
            sink.flush()
    finally:
        sink.close()  # the failure was raised once; nothing is left pending
    assert sink.written == 0


def test_back_pressure_with_tiny_max_pending_loses_nothing(questdb_tables: str) -> None:
    url = questdb_tables
    pid = patient()
    max_pending, per_write, writes = 8, 3, 100
    sink = sink_for(url, batch_size=5, flush_interval_ms=20, max_pending=max_pending)
    highest = 0
    for w in range(writes):
        events: list[Event] = [
            sample(pid, Signal.HEART_RATE, 60.0 + (w * per_write + i) % 80, (w * per_write + i))
            for i in range(per_write)
        ]
        sink.write_lines(outcome_lines(Outcome(parts=list(events))))
        # write() blocks while more than max_pending lines are unconfirmed, so in flight there
        # are never more than max_pending plus the batch just handed over.
        highest = max(highest, sink._pending)
    sink.close()
    total = writes * per_write
    assert highest <= max_pending + per_write
    assert sink.written == total

    got = poll(lambda: read_vitals(url, [pid]), lambda v: len(v) >= total, "all points")
    wait_applied(url, "vitals")
    got = read_vitals(url, [pid])
    assert sorted(t - T0_MS for *_, t in got) == list(range(total))
    assert {(p, sig) for p, sig, *_ in got} == {(pid, "heart_rate")}


def test_each_batch_writes_a_pipeline_health_point(questdb_tables: str) -> None:
    url = questdb_tables
    outcome, states = twin_outcome([patient()])
    sink = sink_for(url)
    sink.runtime = f"test-{uuid.uuid4().hex[:8]}"
    sink.write(outcome, states)
    sink.close()
    sql = f"SELECT events, effects, dead_letters FROM pipeline WHERE runtime = '{sink.runtime}'"
    got = poll(lambda: rows(url, sql), bool, "pipeline point")
    assert got == [{"events": outcome.n_events, "effects": len(outcome.effects), "dead_letters": 0}]


def test_forecasts_arrive_as_the_points_the_dashboards_query(questdb_tables: str) -> None:
    """Quantile trajectories per signal and horizon, and risk by horizon with its interval,
    at the forecast's slot time (the patient-detail and ward dashboards read these)."""
    url = questdb_tables
    pid = patient()
    at = T0_MS + 15 * 60_000
    levels = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
    q = np.zeros((2, 3, len(levels)), dtype=np.float32)
    for k, base in enumerate((80.0, 96.0)):
        for step in range(3):
            q[k, step] = [base + step + spread for spread in (-4, -2, -1, 0, 1, 2, 4)]
    fc = SimpleNamespace(
        patient_id=pid,
        at_ms=at,
        step_minutes=60,
        targets=("heart_rate", "spo2"),
        quantile_levels=levels,
        quantile_array=q,
        risk={1.0: 0.02, 6.0: 0.25},
        risk_low={1.0: 0.01, 6.0: 0.2},
        risk_high={1.0: 0.03, 6.0: 0.3},
    )
    write_and_close(url, Outcome(forecasts=[fc]), {})
    wait_applied(url, "forecasts", "risk")
    got = sorted(
        (r["signal"], int(r["horizon_min"]), r["p02"], r["p50"], r["p98"], ts_ms(r["timestamp"]))
        for r in rows(url, f"SELECT * FROM forecasts WHERE patient = '{pid}'")
    )
    assert got == sorted(
        (sig, 60 * (step + 1), base + step - 4, base + step, base + step + 4, at)
        for sig, base in (("heart_rate", 80.0), ("spo2", 96.0))
        for step in range(3)
    )
    risk = sorted(
        (r["horizon_h"], r["probability"], r["lower"], r["upper"], ts_ms(r["timestamp"]))
        for r in rows(url, f"SELECT * FROM risk WHERE patient = '{pid}'")
    )
    assert risk == [("1", 0.02, 0.01, 0.03, at), ("6", 0.25, 0.2, 0.3, at)]
