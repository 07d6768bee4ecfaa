"""The faust worker: a thin adapter that feeds Kafka records to the shared ``Pipeline``.

Per micro-batch (``stream.take_events``): ``streams.kafka_batch.process_batch`` decodes and
validates each record, folds each patient's events through ``twin.apply_runs`` and evaluates the
alert policy; this module sends the effects, alerts and dead letters, then the new states to the
changelogged table, and only then lets the batch's offsets be committed.

The replay guard in each table value (``streams.kafka_batch``) relies on the worker seeing
every record of a partition in order, which faust does not always ensure after a restart or a
rebalance: ``streams.kafka_offsets`` checks it per batch and caps the committed offsets at what
the twins hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import faust
from faust.types import TP

from streams.ingress import Ingress
from streams.kafka_batch import Entry, ForecastFn, process_batch
from streams.kafka_consumer import use_fetch_wait
from streams.kafka_offsets import OffsetFrontier, OffsetGap
from streams.kafka_output import OutputRecord, send_grouped
from streams.kafka_settings import KafkaSettings
from streams.kafka_topics import key_partition
from streams.metrics import (
    observe_batch,
    observe_forecast,
    set_consumer_lag,
)
from streams.pipeline import Pipeline
from twin import TwinConfig, TwinState
from twin.alerting import (
    DEFAULT_POLICY,
    AlertPolicy,
)

log = logging.getLogger(__name__)

STALL_EXIT_CODE = 75  # EX_TEMPFAIL: the watchdog found the stream stalled; restart the worker


# The worker's collector thresholds (Python's default: 700, 10, 10). Decoding a batch allocates
# a dict per sample, almost none of them in reference cycles, and with the default a young
# collection ran every 700 of them and a full one, over faust's, torch's and every twin's
# objects, every 70,000. Measured: 7 % less worker CPU at 30 samples a record.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Set the worker process's collector thresholds (the process owner calls this)."""
    gc.set_threshold(*GC_THRESHOLDS)


def make_app(
    settings: KafkaSettings,
    twin_config: TwinConfig | None = None,
    *,
    sinks: list[Any] | None = None,
    policy: AlertPolicy = DEFAULT_POLICY,
    forecaster: Any | None = None,
) -> faust.App:
    """The worker app. ``sinks`` (e.g. ``InfluxSink``) get every batch after its outputs;
    ``forecaster`` (a ``models.fastpath.Forecaster``) answers the twins' "forecast due"."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # A state record is ~15 KB (a day of bins): at the default 16 KB batch size each went
        # to the broker as a batch of its own; larger batches let one produce request carry
        # a partition's states of a whole micro-batch.
        producer_max_batch_size=1_000_000,
        table_standby_replicas=0,
        web_enabled=False,
    )
    use_fetch_wait(app, settings.fetch_wait_ms)
    raw = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    topics = settings.topics
    inputs = app.topic(*topics.inputs, topics.alert_commands, schema=raw)
    # The compacted public state topic is also the table's changelog: one write per patient
    # per batch instead of two identical ones (state snapshots were most of the worker's
    # output), and what the API reads is by construction what a worker recovers from. Its
    # values are table values (bytes, raw codec), declared like faust's own changelogs.
    state_log = app.topic(
        topics.twin_state,
        key_type=bytes,
        value_type=bytes,
        # Explicit: the app default codec is JSON, and recovery would hand the agent dicts.
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        compacting=True,
        deleting=False,
        acks=False,
        internal=True,
    )
    # Not schema=raw: a raw Schema on a Table silently starved the agent (faust 0.15.3).
    table = app.Table(
        "twins",
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        changelog_topic=state_log,
    )
    pipeline = Pipeline(Ingress(), twin_config)
    app.vitaltwin_pipeline = pipeline  # type: ignore[attr-defined]

    # Watchdog against a known faust failure mode: after a rebalance a stream can stall for good
    # (input lag grows, the agent gets nothing, the process looks healthy). Seen here in about
    # one hand-over in four under load. Fail-stop: exit so the supervisor (compose's restart
    # policy, systemd, Kubernetes) starts a fresh worker, which recovers from the changelog and
    # resumes from committed offsets; the replay guard keeps that exact.
    progress = {"at": time.monotonic()}
    input_topics = {*topics.inputs, topics.alert_commands}
    frontier = OffsetFrontier(frozenset(input_topics))
    consumer = app.consumer
    commit_to_broker = consumer._commit

    async def commit_capped(offsets: Mapping[TP, int]) -> bool:
        # Private faust hook (pinned 0.15): the one place offsets leave for the broker.
        capped = frontier.cap(offsets, app.consumer_generation_id)
        return await commit_to_broker(capped) if capped else True

    consumer._commit = commit_capped  # type: ignore[method-assign]

    @app.timer(interval=max(1.0, settings.stall_timeout_s / 6))
    async def watchdog() -> None:
        idle = time.monotonic() - progress["at"]
        if idle < settings.stall_timeout_s:
            return
        committed = getattr(app.consumer, "_committed_offset", {})
        mine = [tp for tp in app.consumer.assignment() if tp.topic in input_topics]
        ends = {tp: app.consumer.highwater(tp) for tp in mine}
        unknown = [tp for tp, end in ends.items() if end is None]
        if unknown:
            # A stream that stalled before its first fetch has no cached highwater: ask the
            # broker. Seen after a kill -9 and restart: the worker recovered, said "ready",
            # never fetched, and looked caught up to a watchdog that only read the cache.
            try:
                ends.update(await app.consumer.highwaters(*unknown))
            except Exception:  # broker unreachable: aiokafka reconnects; judge next round
                log.warning("watchdog could not read end offsets", exc_info=True)
                return
        for tp, highwater in ends.items():
            # Behind means behind what is in the twins *and* committed: a worker whose commits
            # stopped advancing (seen after a restart) would otherwise idle forever with its
            # work uncommitted, and one that faust handed no more records after a gap would
            # idle with records never applied. When idle and healthy, both reach the end.
            applied = frontier.next_offset(tp)
            done = min(committed.get(tp) or 0, applied if applied is not None else 0) - 1
            if highwater is not None and highwater - 1 > done:
                log.critical(
                    "no progress for %.0f s while %s is %d records behind (applied up to %d,"
                    " committed %d): exiting for a restart",
                    idle,
                    tp,
                    highwater - 1 - done,
                    -1 if applied is None else applied - 1,
                    (committed.get(tp) or 0) - 1,
                )
                os._exit(STALL_EXIT_CODE)
        progress["at"] = time.monotonic()  # idle but caught up: nothing to worry about

    @app.agent(inputs)
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            try:
                await _handle(list(events))
            except Exception:
                # Fail stop. take_events acks the whole batch when the agent leaves it, even
                # by an exception, and faust's supervisor then restarts the agent: the batch
                # would be committed half done (seen with a KeyError here: twins stayed behind
                # while the group's offsets reached the end). Exiting before the ack leaves the
                # offsets uncommitted; the restarted worker replays them and the guard makes
                # the replay exact. Graceful shutdown (CancelledError) is not an Exception.
                log.critical("batch failed; exiting without acking it", exc_info=True)
                os._exit(70)

    # Decoded entries by patient, valid while the table still holds the very bytes object they
    # were decoded from (recovery or a rebalance replaces it): saves a JSON parse per patient
    # per batch. A failed batch ends the process (see process), so no half-updated entry
    # survives in here.
    decoded: dict[str, tuple[bytes, Entry]] = {}
    forecast: ForecastFn | None = None
    if forecaster is not None:

        def forecast(states: list[TwinState], slots: list[int]) -> list[Any]:
            started = time.monotonic()
            out: list[Any] = forecaster.forecast_states(states, slots)
            observe_forecast(time.monotonic() - started)
            return out

    def load(key: str) -> Entry:
        raw = table.get(key.encode())
        hit = decoded.get(key)
        if hit is not None and raw is not None and hit[0] is raw:
            return hit[1]
        return Entry.from_bytes(raw)

    async def start_offset(tp: TP) -> int:
        """The committed offset this generation's consumer resumed ``tp`` from."""
        known = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        if known is None:
            # A fresh process may deliver records before faust's post-recovery seek has read
            # the committed offsets (seen here): wait for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.tables.recovery.completed.wait(), 60)
            known = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        if known is None:  # nothing committed (faust also keeps a committed 0 as None)
            known = (await app.consumer.earliest_offsets(tp)).get(tp) or 0
        return int(known)

    # Patient token -> (key bytes, partition) for the outputs. Every topic has the input's
    # partition count (ensure_topics refuses others), so this is the partition the producer
    # would hash the key to, for every output record; hashing once per patient saves a
    # murmur2 in Python per record. Bounded: cleared when it has grown past a ward's worth.
    routes: dict[str, tuple[bytes, int]] = {}

    def route(key: str) -> tuple[bytes, int]:
        hit = routes.get(key)
        if hit is None:
            if len(routes) >= 100_000:
                routes.clear()
            raw = key.encode()
            hit = routes[key] = (raw, key_partition(raw, settings.partitions))
        return hit

    async def _handle(events: list[Any]) -> None:
        started = time.monotonic()
        starts = {tp: await start_offset(tp) for tp in frontier.unknown(events)}
        try:
            moved = frontier.advance(events, starts)
        except OffsetGap as gap:
            # Nothing of this batch is applied or acked: the restart resumes from the committed
            # offset, which the cap keeps at or before the first missing record.
            log.critical("%s: exiting for a restart", gap)
            os._exit(STALL_EXIT_CODE)
        res = process_batch(pipeline, settings, events, load, policy, forecast)
        values = {key: entry.to_bytes() for key, entry in res.states.items()}

        # Outputs first, and acknowledged by the broker, before the state write. The state
        # value carries the replay guard: once it is in Kafka, a restarted worker skips these
        # input records and would never emit their outputs again. Sent after it, a kill -9
        # between the state's delivery and theirs lost the effects and dead letters of the
        # batch for good; in this order the same crash turns into a replay that re-sends
        # identical bytes (deterministic ids): at-least-once outputs, exactly-once state.
        # Straight to the aiokafka producer under faust's, not Topic.send (~230 us a record
        # here), and one record batch per topic-partition rather than a send per record
        # (streams.kafka_output: ~15 us a record against ~3-7).
        def outputs() -> Iterator[OutputRecord]:
            for key, value in res.effects:
                raw, partition = route(key)
                yield topics.effects, raw, value, partition
            for dkey, value in res.dead:
                raw, partition = (None, None) if dkey is None else route(dkey)
                yield topics.dead_letter, raw, value, partition
            for key, value in res.alerts:
                raw, partition = route(key)
                yield topics.alerts, raw, value, partition

        for fut in await send_grouped(app.producer._ensure_producer(), outputs()):
            await fut
        # Then the state, sent here and awaited, never through `table[key] = value`: that
        # queues the changelog record in faust's producer buffer, and the flush faust runs
        # before an offset commit gives up after 0.1 s without a delivery (faust 0.15
        # ProducerBuffer.flush_atmost), so under load a batch's offsets could be committed
        # while its state records were still queued; a hand-over then lost them. Acked only
        # once the broker holds them, a batch's offsets are never committed ahead of its state.
        send = app.producer.send
        logged = []
        for key, value in values.items():
            # The state partition is the patient's input partition (co-partitioned topics).
            partition = res.last_event_of[key].message.partition
            fut = await send(topics.twin_state, key.encode(), value, partition, None, None)
            # What table.send would do: a persistent store records the changelog offset.
            fut.add_done_callback(table._on_changelog_sent)
            logged.append(fut)
        for fut in logged:
            await fut
        for key, value in values.items():
            table.data[key.encode()] = value  # the local store, without a second changelog send
            decoded[key] = (value, res.states[key])
        for sink in sinks or ():
            sink.write(res.outcome, {})
        observe_batch(res.outcome, time.monotonic() - started, topic="kafka")
        frontier.adopt(moved)  # the batch's twins are in Kafka: its offsets may be committed
        _observe_lag(events)
        progress["at"] = time.monotonic()

    def _observe_lag(events: list[Any]) -> None:
        last: dict[Any, int] = {}
        for fev in events:
            msg = fev.message
            last[(msg.topic, msg.partition)] = msg.offset
        # Only partitions still assigned: a rebalance may have taken some away mid-batch, and
        # asking aiokafka for an unassigned partition's highwater is an error.
        assigned = app.consumer.assignment()
        for (topic, partition), offset in last.items():
            tp = TP(topic, partition)
            if tp not in assigned:
                continue
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                set_consumer_lag(topic, partition, highwater - offset - 1)

    return app
