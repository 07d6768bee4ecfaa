"""Benchmark the Kafka worker on a real broker: throughput and event-to-state latency.

Run: ``python benchmarks/bench_kafka.py [--quick] --out var/bench/kafka.json`` with a broker
listening (``scripts/kafka.sh start``; ``--bootstrap`` or VITALTWIN_KAFKA_BOOTSTRAP).

Two measurements, each on fresh, uniquely named topics (8 partitions):

1. **Throughput.** A backlog of wearable records (``--samples-per-record`` samples each, one
   patient per record) is produced through ``EdgeProducer`` first. Then, in this process:
   - *raw consume*: an ``AIOKafkaConsumer`` ``getmany`` loop reads the same input topics from
     the start to the end offsets (no decoding): the ceiling any Python consumer here has;
   - *worker*: the faust app of ``vitaltwin worker`` (``make_app``, one process, started with
     ``await app.start()``) folds the backlog. Rate = samples / (time of the last output record
     the worker sent - time its first batch started). Phase timers (decode, twin apply, entry
     encode, the rest) tell where the time goes; ``--profile`` adds a cProfile top list.
2. **Latency** at a steady offered load (default 5,000 samples/s) through the real worker
   command (a subprocess). Each sample's latency is
   ``CreateTime of the first <prefix>.twin-state record whose Entry.offsets cover the sample's
   input record - CreateTime of that input record``: from the edge's send (the input timestamp
   is the edge's clock at send) until the worker hands the twin snapshot containing the sample
   to its producer. It includes the edge's linger (10 ms), the broker, the worker's fetch and
   micro-batch wait (``VITALTWIN_BATCH_WITHIN_S``), decode and apply; not the output's broker
   acknowledgement or a reader's fetch. Samples in the first seconds (warm-up) are excluded.

Targets (issue): >= 50,000 samples/s per worker process and >= 30% of the raw consume rate;
p99 <= 500 ms at 5,000 samples/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioTP
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

import streams.kafka_app as kafka_app
import streams.kafka_batch as kafka_batch
import twin.transition as transition
from streams.ingress import Ingress, SourceKind
from streams.kafka_consumer import use_fetch_wait
from streams.kafka_producer import EdgeProducer
from streams.kafka_settings import KafkaSettings
from streams.kafka_topics import ensure_topics
from streams.pseudonym import Pseudonymiser, PseudonymStore

REPO = Path(__file__).resolve().parents[1]
PROFILE_PATH = REPO / "var" / "bench" / "kafka-worker.prof"
CODES = [("8867-4", 80, 8, "/min"), ("59408-5", 96, 1.5, "%"), ("9279-1", 16, 2, "/min")]
CODES += [("8310-5", 36.9, 0.3, "Cel"), ("8480-6", 124, 10, "mm[Hg]"), ("55423-8", 8, 10, "1")]
WORKER_ENV = {
    "VITALTWIN_SESSION_TIMEOUT_S": "6",
    "VITALTWIN_HEARTBEAT_S": "1",
    "VITALTWIN_COMMIT_INTERVAL_S": "0.5",
}


# ----------------------------------------------------------------------------------- input


def wearable_records(
    n_patients: int, minutes: int, per_record: int, t0: datetime, seed: int = 1
) -> Iterator[tuple[dict[str, Any], datetime]]:
    """(record, first observed minute) in time order: each record is one patient's batch of
    ``per_record`` samples (up to six signals a minute, then as many minutes as fit).

    Values follow a slow random walk per patient and signal, as a monitored patient's do: scores
    change now and then, not on every sample (which would multiply the effects sent).
    """
    rng = random.Random(seed)
    per_minute = min(per_record, len(CODES))
    minutes_per_record = max(1, per_record // per_minute)
    level = [[rng.gauss(mean, sd) for _, mean, sd, _ in CODES] for _ in range(n_patients)]
    for m0 in range(0, minutes, minutes_per_record):
        for p in range(n_patients):
            samples = []
            for m in range(m0, min(minutes, m0 + minutes_per_record)):
                at = (t0 + timedelta(minutes=m, seconds=p % 60)).isoformat()
                for c, (code, mean, sd, unit) in enumerate(CODES[:per_minute]):
                    level[p][c] += 0.1 * (mean - level[p][c]) + rng.gauss(0, 0.3 * sd)
                    samples.append(
                        {
                            "patient_id": f"MRN-{100000 + p}",
                            "device_id": f"SN-{p:05d}",
                            "observed_at": at,
                            "code": code,
                            "value": round(max(0.0, level[p][c])),
                            "unit": unit,
                        }
                    )
            yield {"samples": samples}, t0 + timedelta(minutes=m0)


def new_settings(args: argparse.Namespace, tag: str) -> KafkaSettings:
    prefix = f"vt-bench-{tag}-{uuid.uuid4().hex[:10]}"
    return KafkaSettings.from_env(
        bootstrap=args.bootstrap,
        topic_prefix=prefix,
        partitions=8,
        app_id=f"{prefix}-app",
        batch_max=args.batch_max,
        batch_within_s=args.batch_within,
    )


def edge_for(settings: KafkaSettings) -> EdgeProducer:
    return EdgeProducer(settings, Pseudonymiser(PseudonymStore(":memory:")))


def end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        check_crcs=False,  # kafka-python's pure-Python CRC32C is slower than everything else
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}")
            for batch in consumer.poll(timeout_ms=500, max_records=100_000).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


# ------------------------------------------------------------------------------ throughput


async def raw_consume(
    bootstrap: str, topics: tuple[str, ...], partitions: int, total: int
) -> float:
    """Seconds an aiokafka getmany loop takes to read ``total`` records of ``topics``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [AioTP(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        start = time.perf_counter()
        while n < total:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                n += len(batch)
        return time.perf_counter() - start
    finally:
        await consumer.stop()


async def faust_consume(settings: KafkaSettings, total: int) -> float:
    """Seconds a faust agent that does nothing but take and ack events takes for ``total``.

    The ceiling any faust worker meets, whatever it does with the records: the same app
    settings, consumer and ``take_events`` micro-batches as the worker, an empty body.
    """
    app = faust.App(
        f"{settings.app_id}-bare",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        web_enabled=False,
    )
    use_fetch_wait(app, settings.fetch_wait_ms)
    raw = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    seen = {"n": 0, "first": 0.0}

    @app.agent(app.topic(*settings.topics.inputs, schema=raw))
    async def bare(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            if not seen["n"]:
                seen["first"] = time.perf_counter()
            seen["n"] += len(events)

    await app.start()
    try:
        deadline = time.monotonic() + 600
        while seen["n"] < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare faust agent took {seen['n']}/{total}")
            await asyncio.sleep(0.005)
        return time.perf_counter() - seen["first"]
    finally:
        await app.stop()


def python_probe_ms() -> float:
    """Best of five runs of a fixed pure-Python loop (dict and string work, like the worker's).

    Our 2-core virtual machines change speed by a third or more as neighbours come and go; the
    probe, recorded with every run, tells a slow machine from a slow change.
    """
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        table: dict[str, int] = {}
        for i in range(200_000):
            key = f"pt_{i % 500}"
            table[key] = table.get(key, 0) + len(key)
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 2)


class PhaseTimers:
    """Wall time spent in the worker's phases, by wrapping the functions it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.first_batch_at: float | None = None
        self.first_batch_cpu: float = 0.0
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        seconds, calls = self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - start
                calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        original = kafka_app.process_batch

        def batch(*args: Any, **kwargs: Any) -> Any:
            if self.first_batch_at is None:
                self.first_batch_at = time.time()
                self.first_batch_cpu = time.process_time()
            return original(*args, **kwargs)

        kafka_app.process_batch = batch  # type: ignore[assignment]  # the name the agent calls
        self._undo.append(lambda: setattr(kafka_app, "process_batch", original))
        self.wrap(kafka_app, "process_batch", "process_batch (decode + apply + bookkeeping)")
        self.wrap(Ingress, "decode_columnar", "ingress decode (JSON + validation)")
        # apply_runs is a generator: time the fold it runs per minute of event time.
        self.wrap(transition, "_fold", "twin fold (apply_runs)")
        self.wrap(kafka_batch.Entry, "to_bytes", "Entry.to_bytes (state JSON)")
        self.wrap(kafka_batch.Entry, "from_bytes", "Entry.from_bytes (table read)")

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()


async def worker_inprocess(
    settings: KafkaSettings, items: int, profile: bool
) -> tuple[dict[str, Any], str | None]:
    kafka_app.tune_gc()  # as `vitaltwin worker` does
    timers = PhaseTimers()
    timers.install()
    profiler = cProfile.Profile() if profile else None
    # Built inside the running loop: faust binds the app to the loop it first sees.
    app = kafka_app.make_app(settings)
    pipeline = app.vitaltwin_pipeline  # type: ignore[attr-defined]
    await app.start()
    try:
        if profiler is not None:
            profiler.enable()
        deadline = time.monotonic() + 600
        while pipeline.accounting.received < items:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker folded {pipeline.accounting.received}/{items}")
            await asyncio.sleep(0.01)  # polling interval
        await app.producer.flush()
        cpu_s = time.process_time() - timers.first_batch_cpu
        if profiler is not None:
            profiler.disable()
    finally:
        await app.stop()
        timers.uninstall()
    acc = pipeline.accounting
    assert acc.closes, acc
    assert acc.received == items, acc
    report = None
    if profiler is not None:
        profiler.dump_stats(PROFILE_PATH)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        report = out.getvalue()
    assert timers.first_batch_at is not None
    return {
        "first_batch_at": timers.first_batch_at,
        "cpu_s": cpu_s,
        "phases_s": dict(timers.seconds),
        "calls": dict(timers.calls),
    }, report


def outputs(bootstrap: str, settings: KafkaSettings) -> tuple[float, dict[str, int]]:
    """Time of the last output record the worker sent, and how many went to each topic."""
    topics = settings.topics
    latest, counts = 0, {}
    for topic in (topics.twin_state, topics.effects, topics.dead_letter):
        records = read_all(bootstrap, topic)
        counts[topic.rsplit(".", 1)[1]] = len(records)
        latest = max([latest, *(r.timestamp for r in records)])
    return latest / 1000, counts


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    settings = new_settings(args, "tput")
    ensure_topics(settings)
    try:
        per = args.samples_per_record
        per_minute = min(per, len(CODES))
        minutes = -(-args.samples // (args.patients * per_minute)) + per // per_minute
        t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes + 60)
        edge = edge_for(settings)
        n_records = n_samples = 0
        start = time.perf_counter()
        for record, at in wearable_records(args.patients, minutes, per, t0):
            edge.send(SourceKind.WEARABLE, record, at + timedelta(seconds=30))
            n_records += 1
            n_samples += len(record["samples"])
            if n_samples >= args.samples:
                break
        edge.close()
        produce_s = time.perf_counter() - start
        raw_s = asyncio.run(
            raw_consume(args.bootstrap, settings.topics.inputs, settings.partitions, n_records)
        )
        bare_s = asyncio.run(faust_consume(settings, n_records))
        timing, profile = asyncio.run(worker_inprocess(settings, n_samples, args.profile))
        last_output, counts = outputs(args.bootstrap, settings)
        worker_s = last_output - timing["first_batch_at"]
        phases = timing["phases_s"]
        other = worker_s - phases["process_batch (decode + apply + bookkeeping)"]
        phases["rest: faust/aiokafka consume, encode + send outputs, table writes"] = other
        result = {
            "records": n_records,
            "samples": n_samples,
            "samples_per_record": per,
            "produce_samples_per_s": n_samples / produce_s,
            "raw_consume_s": raw_s,
            "raw_consume_records_per_s": n_records / raw_s,
            "raw_consume_samples_per_s": n_samples / raw_s,
            # faust alone (an agent that only takes events): the ceiling of any faust worker.
            "faust_bare_samples_per_s": n_samples / bare_s,
            "faust_bare_share_of_raw": raw_s / bare_s,
            "worker_s": worker_s,
            "worker_records_per_s": n_records / worker_s,
            "worker_samples_per_s": n_samples / worker_s,
            "worker_share_of_raw": raw_s / worker_s,
            # CPU seconds the worker process used while folding: less sensitive to other load
            # on the machine than wall time (the rates above are wall-clock).
            "worker_cpu_s": timing["cpu_s"],
            "worker_samples_per_cpu_s": n_samples / timing["cpu_s"],
            "output_records": counts,
            "batch_max": settings.batch_max,
            "batch_within_s": settings.batch_within_s,
            "phases_s": {k: round(v, 3) for k, v in phases.items()},
            "phase_calls": timing["calls"],
        }
        if profile is not None:
            result["profile_top_tottime"] = profile.splitlines()
        return result
    finally:
        if not args.keep_topics:
            delete_topics(args.bootstrap, settings.topic_prefix)


# -------------------------------------------------------------------------------- latency


def group_members(admin: KafkaAdminClient, group: str) -> int:
    with contextlib.suppress(Exception):
        described = admin.describe_groups([group])[group]
        if described.get("group_state") == "Stable":
            return len(described.get("members", []))
    return 0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)  # polling interval


def latency(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    settings = new_settings(args, "lat")
    topics = settings.topics
    ensure_topics(settings)
    env = {**os.environ, **WORKER_ENV, "VITALTWIN_KAFKA_BOOTSTRAP": args.bootstrap}
    env["VITALTWIN_BATCH_MAX"] = str(settings.batch_max)
    env["VITALTWIN_BATCH_WITHIN_S"] = str(settings.batch_within_s)
    log = (tmp / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--prefix",
            topics.prefix,
            "--partitions",
            "8",
            "--app-id",
            settings.app_id,
            "--data-dir",
            str(tmp / "worker"),
            # Off: the offered stream's event time runs 250-500x faster than the wall clock
            # (200 patients, one sample per signal-minute), so forecasts (every 15 event
            # minutes) would fall due that much more often than on a ward. The forecaster's
            # cost is measured by bench_forecast.py.
            "--no-forecast",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    try:
        wait(lambda: group_members(admin, settings.app_id) == 1, 90, "worker group to form")
        per = args.samples_per_record
        per_minute = min(per, len(CODES))
        rec_rate = args.rate / (per // per_minute * per_minute)
        n = int(rec_rate * args.duration)
        minutes = (-(-n // args.patients) + 1) * max(1, per // per_minute)
        t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes + 60)
        records = [r for r, _ in wearable_records(args.patients, minutes, per, t0)][:n]
        edge = edge_for(settings)
        cpu_before = proc_cpu_s(proc.pid)
        start = time.monotonic()
        for i, record in enumerate(records):
            due = start + i / rec_rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)  # pacing the offered load
            edge.send(SourceKind.WEARABLE, record, datetime.now(UTC))
        edge.flush()
        offered_s = time.monotonic() - start
        edge.close()
        ends = end_offsets(args.bootstrap, topics.inputs)

        def caught_up() -> bool:
            assert proc.poll() is None, "worker died"
            got = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
            return all(got[tp].offset >= e for tp, e in ends.items() if e and tp in got) and all(
                tp in got for tp, e in ends.items() if e
            )

        wait(caught_up, 120, "worker to catch up")
        worker_cpu_s = proc_cpu_s(proc.pid) - cpu_before
        caught_up_s = time.monotonic() - start
        load_avg = os.getloadavg()
        inputs = read_all(args.bootstrap, topics.wearable)
        outputs = read_all(args.bootstrap, topics.twin_state)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        admin.close()
        if not args.keep_topics:
            delete_topics(args.bootstrap, settings.topic_prefix)

    # For each patient: the state snapshots in order, with the input offsets they cover.
    snapshots: dict[bytes, list[tuple[dict[str, int], int]]] = defaultdict(list)
    for r in outputs:
        snapshots[r.key].append((json.loads(r.value)["offsets"], r.timestamp))
    first_ts = min(r.timestamp for r in inputs)
    warmup_ms = int(args.warmup * 1000)
    last_ts = max(r.timestamp for r in inputs)
    lat: list[int] = []
    by_third: list[list[int]] = [[], [], []]  # a growing backlog shows as rising thirds
    for r in inputs:
        if r.timestamp - first_ts < warmup_ms:
            continue
        tp = f"{r.topic}:{r.partition}"
        out_ts = next(ts for offs, ts in snapshots[r.key] if offs.get(tp, -1) >= r.offset)
        n_samples = len(json.loads(r.value)["samples"])
        lat.extend([out_ts - r.timestamp] * n_samples)
        third = min(
            2, 3 * (r.timestamp - first_ts - warmup_ms) // (last_ts - first_ts - warmup_ms + 1)
        )
        by_third[third].extend([out_ts - r.timestamp] * n_samples)
    lat.sort()

    def pct(p: float, values: list[int] | None = None) -> float:
        values = lat if values is None else sorted(values)
        return float(values[min(len(values) - 1, int(p / 100 * len(values)))]) if values else 0.0

    return {
        "offered_samples_per_s": args.rate,
        "achieved_offered_samples_per_s": sum(len(r["samples"]) for r in records) / offered_s,
        "samples_per_record": len(records[0]["samples"]),
        "batch_within_s": settings.batch_within_s,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "samples_measured": len(lat),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": float(lat[-1]),
        "p50_ms_by_third_of_run": [pct(50, t) for t in by_third],
        "state_snapshots": len(outputs),
        # The worker's CPU use over the run (one core = 1.0), and the machine's load: a busy
        # machine starves the worker, and the latencies above then measure the machine.
        "worker_cpu_per_wall_s": worker_cpu_s / caught_up_s,
        "load_avg_at_end": load_avg,
        "definition": (
            "CreateTime of the first twin-state record covering the sample's input offset minus "
            "the input record's CreateTime (edge send time); excludes output ack and reader fetch"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("VITALTWIN_KAFKA_BOOTSTRAP"))
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "kafka.json")
    parser.add_argument("--quick", action="store_true", help="small run (about a minute)")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--samples", type=int, help="throughput backlog (default 300k)")
    parser.add_argument("--samples-per-record", type=int, default=3)
    parser.add_argument("--rate", type=float, default=5000, help="offered samples/s (latency)")
    parser.add_argument("--duration", type=float, help="seconds of offered load (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--batch-max", type=int, help="VITALTWIN_BATCH_MAX for the worker")
    parser.add_argument("--batch-within", type=float, help="VITALTWIN_BATCH_WITHIN_S")
    parser.add_argument("--profile", action="store_true", help="cProfile the worker phase")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--keep-topics", action="store_true")
    args = parser.parse_args()
    args.bootstrap = args.bootstrap or "127.0.0.1:9092"
    args.samples = args.samples or (60_000 if args.quick else 300_000)
    args.duration = args.duration or (10.0 if args.quick else 30.0)

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_at_start": os.getloadavg(),
            "python_probe_ms": python_probe_ms(),
        },
        "bootstrap": args.bootstrap,
        "quick": args.quick,
    }
    if not args.skip_throughput:
        results["throughput"] = throughput(args)
    if not args.skip_latency:
        with tempfile.TemporaryDirectory(prefix="vt-bench-kafka-") as tmp:
            try:
                results["latency"] = latency(args, Path(tmp))
            except BaseException:
                log = (Path(tmp) / "worker.log").read_text(errors="replace")
                print("\n".join(log.splitlines()[-40:]), file=sys.stderr)
                raise
    tput = results.get("throughput", {})
    lat = results.get("latency", {})
    results["targets"] = {
        "worker_samples_per_s": 50_000,
        "worker_share_of_raw": 0.30,
        "p99_ms_at_5000_per_s": 500,
    }
    results["met"] = {
        "worker_samples_per_s": tput and tput["worker_samples_per_s"] >= 50_000,
        "worker_share_of_raw": tput and tput["worker_share_of_raw"] >= 0.30,
        "p99_ms_at_5000_per_s": lat and lat["p99_ms"] <= 500 and args.rate >= 5000,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    summary = {k: v for k, v in tput.items() if k != "profile_top_tottime"}
    print(json.dumps({**results, "throughput": summary}, indent=2))
    if "profile_top_tottime" in tput:
        print("\n".join(tput["profile_top_tottime"]))


if __name__ == "__main__":
    main()
