"""Helpers for the worker tests on a real broker: a deterministic vitals stream, worker
subprocesses, topic readers, an offline replay, and a private second broker.

The offline replay is the oracle: it consumes the input topics in partition order, decodes every
record exactly as the worker does (``Ingress().decode`` with the record timestamp as
``received_at`` and ``topic:partition:offset`` as position) and folds each patient's events with
``twin.apply_many``. It shares nothing with the worker (``streams.kafka_app``,
``streams.kafka_batch``) but the decoding, the twin and the ``Entry`` format, so a worker that
loses, repeats or reorders records cannot agree with it by accident.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streams.ingress import Ingress, SourceKind, dead_letter
from streams.kafka_app import STALL_EXIT_CODE
from streams.kafka_batch import Entry
from streams.kafka_producer import EdgeProducer
from streams.kafka_settings import KafkaSettings, Topics
from streams.pseudonym import Pseudonymiser, PseudonymStore
from twin import TwinState, apply_many
from twin.errors import Reason
from twin.events import Event, from_ms

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "scripts" / "kafka.sh"

HR, SPO2, RR = "8867-4", "59408-5", "9279-1"
UNKNOWN_CODE = "0000-0"

# Short group timeouts: a worker joins, dies and is replaced in seconds, not tens of seconds.
WORKER_ENV = {
    "VITALTWIN_SESSION_TIMEOUT_S": "6",
    "VITALTWIN_HEARTBEAT_S": "1",
    "VITALTWIN_COMMIT_INTERVAL_S": "0.5",
    "VITALTWIN_STALL_TIMEOUT_S": "20",
}


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling interval, not synchronisation


def anchor_time() -> datetime:
    """Start of the simulated clock: a whole hour, a few hours before now.

    Kafka applies time retention to record timestamps (a week on the input topics), and the
    edge stamps each record with its simulated delivery time, so the clock must sit near the
    real one or the broker may delete the test's input mid-run. Results do not depend on it:
    the worker and the replay both read the timestamps back from Kafka.
    """
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=6)


# ------------------------------------------------------------------------------- the stream


@dataclass(frozen=True, slots=True)
class Sent:
    """One record as the edge sends it: a wearable batch (dict) or undecodable bytes."""

    kind: SourceKind
    record: dict[str, Any] | bytes
    delivered_at: datetime
    items: int  # accounting items: samples in a batch, 1 for an undecodable record


@dataclass(slots=True)
class VitalsStream:
    records: list[Sent]
    mrns: list[str]
    serials: list[str]
    counts: Counter[str] = field(default_factory=Counter)
    valid_by_mrn: Counter[str] = field(default_factory=Counter)  # samples a twin should count

    @property
    def items(self) -> int:
        return sum(r.items for r in self.records)

    def split(self, fraction: float) -> tuple[list[Sent], list[Sent]]:
        cut = int(len(self.records) * fraction)
        return self.records[:cut], self.records[cut:]


def vitals_stream(
    n_patients: int,
    minutes: int,
    t0: datetime,
    seed: int = 7,
    *,
    duplicate_rate: float = 0.01,
    late_rate: float = 0.005,
    unknown_rate: float = 0.002,
    malformed: int = 30,
) -> VitalsStream:
    """Deterministic wearable traffic: one record per patient-minute, sorted by delivery time.

    Each record is a ``{"samples": [HR, SpO2, RR]}`` batch for one patient (batching per
    patient-minute keeps the Kafka record count a third of the sample count; the accounting
    unit stays the sample). Patients have MRN-like ids and device serials that the edge
    pseudonymises. Mixed in, all reproducible from ``seed``:

    - exact duplicate re-sends of ~``duplicate_rate`` of the records, 30-90 s after the original;
    - ~``late_rate`` of the records delivered 16-25 minutes late: their 5-minute bin has closed
      (lateness bound 10 min), so the twin counts them late instead of binning them;
    - ~``unknown_rate`` of the batches carry a fourth sample with an unknown LOINC code;
    - ``malformed`` truncated JSON lines with no identifiers in them.
    """
    rng = random.Random(seed)
    mrns = [f"MRN-{100000 + 37 * i:07d}" for i in range(n_patients)]
    serials = [f"SN-{seed:02d}{i:05d}" for i in range(n_patients)]
    counts: Counter[str] = Counter()
    valid: Counter[str] = Counter()
    pending: list[tuple[datetime, int, Sent]] = []  # (delivered_at, sequence, record)
    for mrn, serial in zip(mrns, serials, strict=True):
        hr, spo2, rr = rng.gauss(80, 8), rng.gauss(96, 1.5), rng.gauss(16, 2)
        drift = rng.choice((-1, 0, 0, 1))  # some patients slowly deteriorate
        for minute in range(minutes):
            at = t0 + timedelta(minutes=minute, seconds=rng.randint(0, 50))
            hr += rng.gauss(0.03 * drift, 1.0)
            spo2 = min(100.0, spo2 + rng.gauss(-0.004 * drift, 0.3))
            rr += rng.gauss(0.01 * drift, 0.4)
            samples = [
                _sample(mrn, serial, at, HR, round(hr), "/min"),
                _sample(mrn, serial, at, SPO2, round(spo2), "%"),
                _sample(mrn, serial, at, RR, round(rr), "/min"),
            ]
            if rng.random() < unknown_rate:
                samples.append(_sample(mrn, serial, at, UNKNOWN_CODE, 1, "/min"))
                counts["unknown_code"] += 1
            delivered = at + timedelta(seconds=rng.randint(2, 20))
            if rng.random() < late_rate:
                delivered += timedelta(minutes=rng.randint(16, 25))
                counts["late_records"] += 1
            sent = Sent(SourceKind.WEARABLE, {"samples": samples}, delivered, len(samples))
            pending.append((delivered, len(pending), sent))
            valid[mrn] += 3
            if rng.random() < duplicate_rate:
                again = delivered + timedelta(seconds=rng.randint(30, 90))
                pending.append(
                    (again, len(pending), Sent(sent.kind, sent.record, again, sent.items))
                )
                valid[mrn] += 3
                counts["duplicate_records"] += 1
            counts["patient_minutes"] += 1
    span = timedelta(minutes=minutes)
    for i in range(malformed):
        at = t0 + span * (i + 0.5) / malformed
        raw = b'{"samples": [{"code": "8867-4", "value": ' + str(60 + i).encode()
        pending.append((at, len(pending), Sent(SourceKind.WEARABLE, raw, at, 1)))
        counts["malformed"] += 1
    pending.sort(key=lambda x: (x[0], x[1]))
    return VitalsStream([s for _, _, s in pending], mrns, serials, counts, valid)


def _sample(
    mrn: str, serial: str, at: datetime, code: str, value: float, unit: str
) -> dict[str, Any]:
    return {
        "patient_id": mrn,
        "device_id": serial,
        "observed_at": at.isoformat(),
        "code": code,
        "value": value,
        "unit": unit,
        "source": "wearable",
    }


def produce(edge: EdgeProducer, records: Iterable[Sent]) -> int:
    """Send records through the edge (pseudonymising) and wait until all are acknowledged."""
    n = 0
    for sent in records:
        edge.send(sent.kind, sent.record, sent.delivered_at)
        n += 1
    edge.flush()
    return n


def make_edge(settings: KafkaSettings, store_path: Path) -> tuple[EdgeProducer, PseudonymStore]:
    store = PseudonymStore(store_path)
    return EdgeProducer(settings, Pseudonymiser(store)), store


# ------------------------------------------------------------------------------ the workers


def unique_settings(bootstrap: str, tag: str, partitions: int = 8) -> KafkaSettings:
    """Settings with a unique topic prefix; the app id shares the prefix (one cleanup)."""
    prefix = f"vt-{tag}-{uuid.uuid4().hex[:12]}"
    return KafkaSettings(
        bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions, app_id=f"{prefix}-app"
    )


def _die_with_parent() -> None:
    """In the child: SIGKILL it if the test process dies first (Linux). Its own session keeps
    terminal signals away from it, so without this a killed test run leaves workers behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class WorkerProcess:
    """``python -m streams.cli worker`` in its own process group, logging to a file."""

    def __init__(
        self, settings: KafkaSettings, data_dir: Path, name: str, extra: list[str] | None = None
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.name = name
        self.extra = extra or []
        self.restarts = 0
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **WORKER_ENV,
            "VITALTWIN_KAFKA_BOOTSTRAP": self.settings.bootstrap,
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--prefix",
            self.settings.topic_prefix,
            "--partitions",
            str(self.settings.partitions),
            "--app-id",
            self.settings.app_id,
            "--data-dir",
            str(self.data_dir),
            "--loglevel",
            "info",
            *self.extra,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"---- start {time.strftime('%H:%M:%S')} ----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 hits all of it
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supervised(self) -> bool:
        """Alive, restarting it as a supervisor would if its stall watchdog made it exit."""
        if self.proc is not None and self.proc.poll() == STALL_EXIT_CODE:
            self.restarts += 1
            self.start()
        return self.alive

    def kill9(self) -> None:
        """SIGKILL the whole process group and reap it: a crash, no clean-up of any kind."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (faust's graceful shutdown: flush, commit, leave the group); its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s") from None

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@contextlib.contextmanager
def workers_cleaned_up(*workers: WorkerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for w in workers:
            w.cleanup()


def delete_test_topics(admin: KafkaAdminClient, prefix: str) -> None:
    """Best effort: drop every topic the test (and its faust app) created."""
    with contextlib.suppress(Exception):
        mine = [t for t in admin.list_topics() if t.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)


# --------------------------------------------------------------------------- reading topics


def _consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=0,
        check_crcs=False,  # kafka-python's pure-Python CRC32C costs seconds per 100 MB
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    consumer = _consumer(bootstrap)
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets, in (partition, offset) order."""
    consumer = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} has no partitions"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        by_tp: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"timed out reading {topic} up to {end}"
            for tp, batch in consumer.poll(timeout_ms=500, max_records=50_000).items():
                by_tp[tp].extend(r for r in batch if r.offset < end[tp])
        return [r for tp in tps for r in by_tp[tp]]
    finally:
        consumer.close()


def latest_entries(bootstrap: str, topics: Topics) -> dict[str, Entry]:
    """The compacted twin-state view: the last Entry per patient token."""
    last = {r.key.decode(): r.value for r in read_topic(bootstrap, topics.twin_state)}
    return {key: Entry.from_bytes(value) for key, value in last.items()}


def dead_letters(bootstrap: str, topics: Topics) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topics.dead_letter)]


class ProgressWatcher:
    """Follows the twin-state topic: how many items the worker(s) have folded in so far."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.consumer = _consumer(bootstrap)
        tps = [
            TopicPartition(topics.twin_state, p)
            for p in sorted(self.consumer.partitions_for_topic(topics.twin_state) or ())
        ]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.items: dict[bytes, int] = {}

    def processed(self) -> int:
        for batch in self.consumer.poll(timeout_ms=100, max_records=50_000).values():
            for r in batch:
                items = json.loads(r.value)["items"]
                self.items[r.key] = max(self.items.get(r.key, 0), items)
        return sum(self.items.values())

    def wait_for(self, n: int, timeout: float, what: str) -> int:
        return wait_until(lambda: (got := self.processed()) >= n and got, timeout, what, 0.05)

    def close(self) -> None:
        self.consumer.close()


def committed(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    offsets = admin.list_group_offsets(group).get(group, {})
    return {tp: meta.offset for tp, meta in offsets.items()}


def wait_caught_up(
    admin: KafkaAdminClient,
    bootstrap: str,
    settings: KafkaSettings,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Wait until the worker group has committed every input offset.

    The worker acks a batch only after the broker has its outputs and state, so once the
    group's committed offsets reach the end of the inputs, every output of every input is in
    Kafka.
    """
    ends = end_offsets(bootstrap, settings.topics.inputs)

    def done() -> bool:
        assert alive(), "the worker died while catching up"
        try:
            got = committed(admin, settings.app_id)
        except KafkaError:  # e.g. the coordinator still loading after a broker restart
            return False
        return all(got.get(tp, 0) >= end for tp, end in ends.items() if end > 0)

    wait_until(done, timeout, f"group {settings.app_id} to commit {sum(ends.values())} offsets")


# --------------------------------------------------------------------------- offline replay


@dataclass(slots=True)
class Replay:
    states: dict[str, TwinState]
    items: Counter[str]  # processed items per patient token
    dead_ids: set[str]
    events: dict[str, list[Event]]
    records: int

    @property
    def processed(self) -> int:
        return sum(self.items.values())


def replay(bootstrap: str, topics: Topics) -> Replay:
    """Fold the input topics, as stored in Kafka, into twins without any worker."""
    ingress = Ingress()
    events: dict[str, list[Event]] = {}
    items: Counter[str] = Counter()
    dead_ids: set[str] = set()
    n = 0
    for topic in topics.inputs:
        kind = SourceKind.WEARABLE if topic == topics.wearable else SourceKind.FHIR
        for rec in read_topic(bootstrap, topic):  # partition order, offset order
            n += 1
            key = None if rec.key is None else rec.key.decode()
            position = f"{topic}:{rec.partition}:{rec.offset}"
            res = ingress.decode(
                kind, rec.value, received_at=from_ms(rec.timestamp), source=topic, position=position
            )
            if res.events and (key is None or any(e.patient_id != key for e in res.events)):
                reason = Reason.MISSING_ELEMENT if key is None else Reason.PATIENT_MISMATCH
                dl = dead_letter(reason, "", topic, kind, rec.value, rec.timestamp, position)
                dead_ids.add(dl.dead_letter_id)
                continue
            dead_ids.update(d.dead_letter_id for d in res.dead)
            if key is not None:
                items[key] += res.items - len(res.dead)
                events.setdefault(key, []).extend(res.events)
    states: dict[str, TwinState] = {}
    for key, evs in events.items():
        state, _ = apply_many(None, evs)
        if state is not None:
            states[key] = state
    return Replay(states, items, dead_ids, events, n)


def state_mismatches(entries: dict[str, Entry], expected: Replay) -> list[str]:
    """Patients whose worker state differs from the replay (TwinState equality: to_bytes)."""
    bad = []
    for key in sorted(set(entries) | set(expected.states)):
        got = entries[key].state if key in entries else None
        want = expected.states.get(key)
        if got != want:
            bad.append(f"{key}: worker {got!r} != replay {want!r}{_field_diff(got, want)}")
    return bad


def _field_diff(got: TwinState | None, want: TwinState | None) -> str:
    """Which serialised fields differ, so a failure says more than two equal-looking reprs."""
    if got is None or want is None:
        return ""
    a, b = got.to_dict(), want.to_dict()
    parts = []
    for name in a:
        if a[name] == b.get(name):
            continue
        if name == "seen":
            ga, gb = dict(map(tuple, a[name])), dict(map(tuple, b[name]))
            only_w = sorted(set(ga) - set(gb))[:3]
            only_r = sorted(set(gb) - set(ga))[:3]
            parts.append(
                f"seen: {len(ga)} vs {len(gb)}, worker only {only_w}, replay only {only_r}"
            )
        elif name == "ring":
            wr, rr = got.ring, want.ring
            diff = np.argwhere(~((wr == rr) | (np.isnan(wr) & np.isnan(rr))))
            shown = [(int(c), int(b), float(wr[c, b]), float(rr[c, b])) for c, b in diff[:4]]
            parts.append(
                f"ring: {len(diff)} slots differ (channel, slot, worker, replay): {shown}; "
                f"closed_upto {got.closed_upto}, ring bins {wr.shape[1]}"
            )
        else:
            parts.append(f"{name}: {str(a[name])[:200]} vs {str(b.get(name))[:200]}")
    return "\n    " + "\n    ".join(parts)


def check_against_replay(
    bootstrap: str, topics: Topics, produced_items: int, context: str = ""
) -> tuple[Replay, dict[str, Entry], list[dict[str, Any]]]:
    """Final states equal the replay, and the accounting closes on the unique dead letters."""
    expected = replay(bootstrap, topics)
    entries = latest_entries(bootstrap, topics)
    dls = dead_letters(bootstrap, topics)
    bad = state_mismatches(entries, expected)
    assert not bad, f"{len(bad)} twins differ from the replay{context}:\n" + "\n".join(bad[:5])
    worker_items = {k: e.items for k, e in entries.items() if e.items}
    assert worker_items == {k: v for k, v in expected.items.items() if v}, (
        f"per-patient item counts differ from the replay{context}"
    )
    unique_dead = {d["dead_letter_id"] for d in dls}
    assert unique_dead == expected.dead_ids, (
        f"dead letters differ{context}: {len(unique_dead - expected.dead_ids)} unexpected, "
        f"{len(expected.dead_ids - unique_dead)} missing"
    )
    processed = sum(e.items for e in entries.values())
    assert processed + len(unique_dead) == produced_items, (
        f"accounting does not close{context}: {processed} processed + {len(unique_dead)} dead "
        f"letters != {produced_items} items produced"
    )
    return expected, entries, dls


# ------------------------------------------------------------------- a private second broker


class PrivateBroker:
    """A broker of our own (scripts/kafka.sh on other ports, data in a temp dir): the test may
    kill and restart it without disturbing the shared one on 9092."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "PYTHON": sys.executable,
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(port + 1),
            "KAFKA_DATA_DIR": str(data_dir),
        }

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(KAFKA_SH), command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"kafka.sh {command} failed (rc {done.returncode}):\n{done.stderr}"
            )
        return done

    def start(self) -> None:
        self.run("start")

    def kill9(self) -> None:
        self.run("kill9")

    def stop(self, wipe: bool = False) -> None:
        self.run("stop", *(["--wipe"] if wipe else []))


def free_port_pair() -> int:
    """A port p with p and p + 1 free (listener and controller).

    Chosen below the kernel's ephemeral range: a port the kernel hands out for bind(0) can be
    taken by any outgoing connection (the workers and clients make many) before the broker
    binds it.
    """
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, max(low - 2, 10_002))
        try:
            with socket.socket() as s1, socket.socket() as s2:
                s1.bind(("127.0.0.1", port))
                s2.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair")
