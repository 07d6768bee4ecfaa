"""Kafka-mode settings, read from the environment (``VITALTWIN_*``), with production notes.

| variable | default | production |
|---|---|---|
| VITALTWIN_KAFKA_BOOTSTRAP | 127.0.0.1:9092 | your brokers, TLS+SASL (see README) |
| VITALTWIN_TOPIC_PREFIX | vitaltwin | one prefix per environment |
| VITALTWIN_PARTITIONS | 8 | >= the most workers you will run; fixed once created |
| VITALTWIN_REPLICATION_FACTOR | 1 | 3 (with min.insync.replicas=2) |
| VITALTWIN_APP_ID | vitaltwin-worker | consumer group name |
| VITALTWIN_STORE | rocksdb:// if rocksdict is installed, else memory:// | rocksdb:// |
| VITALTWIN_DATA_DIR | var/worker | a persistent volume per worker |
| VITALTWIN_SESSION_TIMEOUT_S | 10 | 30-60: fewer rebalances on GC pauses |
| VITALTWIN_HEARTBEAT_S | 1 | session timeout / 10 |
| VITALTWIN_COMMIT_INTERVAL_S | 1.0 | 2.8 (faust's default); lower = less replay after a crash |
| VITALTWIN_BATCH_MAX | 2000 | records per micro-batch |
| VITALTWIN_BATCH_WITHIN_S | 0.05 | micro-batch time bound (adds at most this latency) |
| VITALTWIN_FETCH_WAIT_MS | 100 | longest the broker holds an empty fetch (``streams.kafka_consumer``) |
| VITALTWIN_STALL_TIMEOUT_S | 60 | no progress this long while behind: exit 75 for a restart |
| VITALTWIN_FORECAST | 1 | 0 switches the TFT off (as ``--no-forecast``) |
| VITALTWIN_CHECKPOINT | the shipped one | your trained checkpoint directory |

Run workers under a supervisor that restarts them (compose ``restart: unless-stopped``,
systemd ``Restart=on-failure``): exit code 75 means "restart me", after a stalled stream or a
gap in what faust delivered (``streams.kafka_offsets``); the restart resumes exactly.

Tables are always changelogged: the twin table's changelog is the compacted
``<prefix>.twin-state`` topic, so one app id per prefix. The memory store rebuilds from it on
start.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_store() -> str:
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @property
    def wearable(self) -> str:
        return f"{self.prefix}.wearable"

    @property
    def ehr(self) -> str:
        return f"{self.prefix}.ehr"

    @property
    def twin_state(self) -> str:
        return f"{self.prefix}.twin-state"

    @property
    def effects(self) -> str:
        return f"{self.prefix}.effects"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def alert_commands(self) -> str:
        """Clinicians' acknowledge/silence/annotate commands, keyed by patient (from the API)."""
        return f"{self.prefix}.alert-commands"

    @property
    def inputs(self) -> tuple[str, str]:
        return (self.wearable, self.ehr)

    @property
    def all(self) -> tuple[str, ...]:
        return (
            self.wearable,
            self.ehr,
            self.twin_state,
            self.effects,
            self.alerts,
            self.dead_letter,
            self.alert_commands,
        )


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "vitaltwin"
    partitions: int = 8
    replication_factor: int = 1
    app_id: str = "vitaltwin-worker"
    store: str = field(default_factory=_default_store)
    data_dir: Path = Path("var/worker")
    session_timeout_s: float = 10.0
    heartbeat_s: float = 1.0
    commit_interval_s: float = 1.0
    batch_max: int = 2000
    batch_within_s: float = 0.05
    fetch_wait_ms: int = 100
    stall_timeout_s: float = 60.0

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> KafkaSettings:
        e = dict(os.environ if env is None else env)
        base = cls()

        def get(name: str, default: object) -> str:
            return e.get(f"VITALTWIN_{name}", str(default))

        values: dict[str, object] = {
            "bootstrap": get("KAFKA_BOOTSTRAP", base.bootstrap),
            "topic_prefix": get("TOPIC_PREFIX", base.topic_prefix),
            "partitions": int(get("PARTITIONS", base.partitions)),
            "replication_factor": int(get("REPLICATION_FACTOR", base.replication_factor)),
            "app_id": get("APP_ID", base.app_id),
            "store": get("STORE", base.store),
            "data_dir": Path(get("DATA_DIR", base.data_dir)),
            "session_timeout_s": float(get("SESSION_TIMEOUT_S", base.session_timeout_s)),
            "heartbeat_s": float(get("HEARTBEAT_S", base.heartbeat_s)),
            "commit_interval_s": float(get("COMMIT_INTERVAL_S", base.commit_interval_s)),
            "batch_max": int(get("BATCH_MAX", base.batch_max)),
            "batch_within_s": float(get("BATCH_WITHIN_S", base.batch_within_s)),
            "fetch_wait_ms": int(get("FETCH_WAIT_MS", base.fetch_wait_ms)),
            "stall_timeout_s": float(get("STALL_TIMEOUT_S", base.stall_timeout_s)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
