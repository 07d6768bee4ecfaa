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


# ------------------------------------------------------------------------------------- QuestDB
# QuestDB stands in for InfluxDB 2.x (not installable here): it accepts the InfluxDB v2 write
# API on /api/v2/write and answers SQL on /exec, both on its HTTP port. Run by
# ``scripts/questdb.sh``. Point the tests at a running one with ``VITALTWIN_QUESTDB_URL``
# (default ``http://127.0.0.1:9000``); when nothing listens there, the session starts one itself
# and stops it at the end.

QUESTDB_SH = REPO / "scripts" / "questdb.sh"
DEFAULT_QUESTDB_URL = "http://127.0.0.1:9000"


def _questdb_env(port: int) -> dict[str, str]:
    env = {**os.environ, "QUESTDB_HTTP_PORT": str(port), "PYTHON": sys.executable}
    if port != 9000:  # a second server: its own data dir
        env.setdefault("QUESTDB_DATA_DIR", str(REPO / "var" / f"questdb-{port}"))
    return env


def _questdb_sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(QUESTDB_SH), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _questdb_answers(url: str, timeout_s: float = 60.0) -> bool:
    """Wait until ``select 1`` succeeds (the HTTP port opens a moment before SQL is served)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/exec?query=select%201", timeout=5) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.fixture(scope="session")
def questdb_url() -> Iterator[str]:
    """Base URL of a ready QuestDB; starts (and later stops) one if none listens."""
    from urllib.parse import urlsplit

    url = os.environ.get("VITALTWIN_QUESTDB_URL", DEFAULT_QUESTDB_URL).rstrip("/")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if _listening(host, port):
        if not _questdb_answers(url):
            pytest.fail(f"something listens on {host}:{port} but does not answer QuestDB SQL")
        yield url
        return
    if host not in LOCAL_HOSTS:
        pytest.fail(f"no QuestDB listens on {url} and it is not local to start one")
    env = _questdb_env(port)
    started = _questdb_sh("start", env)
    if started.returncode != 0:
        pytest.fail(f"scripts/questdb.sh start failed (rc {started.returncode}):\n{started.stderr}")
    if "already running" in started.stderr:  # another session (xdist worker) started it first
        yield url
        return
    try:
        yield url
    finally:
        stopped = _questdb_sh("stop", env)
        if stopped.returncode != 0:
            print(f"scripts/questdb.sh stop failed:\n{stopped.stderr}", file=sys.stderr)
