"""Fixtures for tests that talk to a real Kafka broker.

The broker is the real Apache Kafka (KRaft, single node) run by ``scripts/kafka.sh``. Point the
tests at a running one with ``VITALTWIN_KAFKA_BOOTSTRAP`` (default ``127.0.0.1:9092``); when
nothing listens there, the session starts one itself and stops it at the end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "scripts" / "kafka.sh"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _split(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host, int(port)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _broker_env(port: int) -> dict[str, str]:
    env = {**os.environ, "KAFKA_PORT": str(port), "PYTHON": sys.executable}
    if port != 9092:  # a second broker: its own controller port and data dir
        env.setdefault("KAFKA_CONTROLLER_PORT", str(port + 1))
        env.setdefault("KAFKA_DATA_DIR", str(REPO / "var" / f"kafka-{port}"))
    return env


def _kafka_sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a ready broker; starts (and later stops) one if none listens."""
    bootstrap = os.environ.get("VITALTWIN_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    host, port = _split(bootstrap)
    if _listening(host, port):
        yield bootstrap
        return
    if host not in LOCAL_HOSTS:
        pytest.fail(f"no Kafka broker listens on {bootstrap} and it is not local to start one")
    env = _broker_env(port)
    started = _kafka_sh("start", env)
    if started.returncode != 0:
        pytest.fail(f"scripts/kafka.sh start failed (rc {started.returncode}):\n{started.stderr}")
    if "already running" in started.stderr:  # another session (xdist worker) started it first
        yield bootstrap
        return
    try:
        yield bootstrap
    finally:
        stopped = _kafka_sh("stop", env)
        if stopped.returncode != 0:
            print(f"scripts/kafka.sh stop failed:\n{stopped.stderr}", file=sys.stderr)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="vitaltwin-tests")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def new_topic(kafka_admin: KafkaAdminClient) -> Iterator[Callable[..., str]]:
    """Factory: create a uniquely named topic, wait for its leaders; deleted after the test."""
    created: list[str] = []

    def create(
        prefix: str = "vt-test", partitions: int = 1, configs: dict[str, str] | None = None
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex}"
        kafka_admin.create_topics(
            {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "configs": configs or {},
                }
            },
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield create
    if created:
        with contextlib.suppress(Exception):  # best effort: names are unique anyway
            kafka_admin.delete_topics(created)
