"""Webhook delivery against a real HTTP receiver on 127.0.0.1 that each test starts.

Signatures are checked by the receiver with the independent ``standardwebhooks`` package.
The retry schedule is compressed 1000x (``retry_time_scale``); everything else is production
code: real sockets, the SSRF guard (loopback allowed explicitly), SQLite, a subprocess killed
with SIGKILL mid-request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import standardwebhooks
from pydantic import SecretStr
from test_webhooks_support import SECRET, SECRET_2, Received, Receiver, config, note

from streams.errors import ConfigError
from streams.webhooks import (
    Deliverer,
    Outbox,
    ReceiverConfig,
    load_webhook_config,
    route,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


def start(
    receivers: list[Receiver],
    respond: Callable[[int, Received], tuple[int, dict[str, str]]] | None = None,
    port: int = 0,
) -> Receiver:
    r = Receiver(respond) if respond is not None else Receiver()
    receivers.append(r.start(port))
    return r


def now_ms() -> int:
    # Enqueue at the real time: the deliverer runs on the wall clock (expiry, retry times).
    return int(time.time() * 1000)


def verified(r: Receiver, secret: str = SECRET) -> list[dict[str, object]]:
    """Every request body, verified as a receiver would (raises on a bad signature)."""
    hook = standardwebhooks.Webhook(secret)
    return [hook.verify(req.body, req.headers) for req in r.requests]


def test_signatures_verify_with_the_standardwebhooks_package(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    r = start(receivers)
    rotating = ReceiverConfig(
        name="r", url=r.url, secrets=(SecretStr(SECRET), SecretStr(SECRET_2)), timeout_s=2
    )
    cfg = config(r.url).model_copy(update={"receivers": (rotating,)})
    outbox = Outbox(tmp_path / "o.db")
    outbox.enqueue(route(cfg, [note("p1"), note("p2", "qsofa", severity="warning")]), now_ms())
    assert Deliverer(outbox, cfg).run_until_idle(10)
    for secret in (SECRET, SECRET_2):  # during rotation either key verifies alone
        bodies = verified(r, secret)
        assert [b["data"]["patient"] for b in bodies] == ["p1", "p2"]  # type: ignore[index]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + "A" * 32).verify(
            r.requests[0].body, r.requests[0].headers
        )
    assert r.requests[0].headers["content-type"] == "application/json"


def test_500_then_200_is_delivered_with_the_same_webhook_id(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    r = start(receivers, lambda n, req: (500 if n == 1 else 200, {}))
    cfg = config(r.url)
    outbox = Outbox(tmp_path / "o.db")
    outbox.enqueue(route(cfg, [note()]), now_ms())
    assert Deliverer(outbox, cfg).run_until_idle(10)
    ids = r.ids()
    assert len(ids) == 2
    assert ids[0] == ids[1] == outbox.webhook_ids()[0]
    assert len(verified(r)) == 2
    assert outbox.counts() == {"pending": 0, "delivered": 1, "dead": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enqueue_cohort(
    cfg_url: str, outbox: Outbox, patients: int, per_patient: int
) -> dict[str, list[str]]:
    """Separate batches (one message each), interleaved across patients like a live ward."""
    cfg = config(cfg_url)
    expected: dict[str, list[str]] = {}
    for k in range(per_patient):
        for p in range(patients):
            (msg,) = route(cfg, [note(f"p{p}", seq=k)])
            outbox.enqueue([msg], now_ms())
            expected.setdefault(f"p{p}", []).append(msg.webhook_id)
    return expected


def first_seen_per_patient(r: Receiver) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for req in r.requests:
        pid = json.loads(req.body)["data"]["patient"]
        wid = req.headers["webhook-id"]
        if wid not in seen.setdefault(pid, []):
            seen[pid].append(wid)
    return seen


def test_receiver_down_then_up_gets_every_alert_in_order_per_patient(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    outbox = Outbox(tmp_path / "o.db")
    expected = enqueue_cohort(url, outbox, patients=4, per_patient=5)
    deliverer = Deliverer(outbox, config(url))
    stop = threading.Event()
    worker = threading.Thread(target=deliverer.run, args=(stop,))
    worker.start()
    try:
        time.sleep(0.7)  # down: connections refused, retries back off
        assert outbox.counts()["delivered"] == 0
        r = start(receivers, port=port)
        deadline = time.monotonic() + 20
        while outbox.counts()["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        deliverer.wake()
        worker.join(10)
    assert outbox.counts() == {"pending": 0, "delivered": 20, "dead": 0}
    assert first_seen_per_patient(r) == expected
    verified(r)


def test_gone_disables_the_endpoint(tmp_path: Path, receivers: list[Receiver]) -> None:
    r = start(receivers, lambda n, req: (410, {}))
    cfg = config(r.url)
    outbox = Outbox(tmp_path / "o.db")
    outbox.enqueue(route(cfg, [note("p1"), note("p2")]), now_ms())
    assert Deliverer(outbox, cfg).run_until_idle(10)
    assert len(r.requests) == 1
    assert outbox.disabled_receivers() == {"r": "endpoint answered 410 Gone"}
    assert [d.reason for d in outbox.dead_letters()] == [
        "receiver disabled: endpoint answered 410 Gone"
    ] * 2


def test_ssrf_guard_refuses_private_addresses_by_default(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    r = start(receivers)
    env = {"VITALTWIN_WEBHOOK_URL": r.url, "VITALTWIN_WEBHOOK_SECRET": SECRET}
    with pytest.raises(ConfigError, match="loopback"):
        load_webhook_config(env=env)
    with pytest.raises(ConfigError, match="private"):
        load_webhook_config(env={**env, "VITALTWIN_WEBHOOK_URL": "http://10.0.0.8/hook"})
    # A host *name* that resolves to loopback passes the config check but not the connect-time
    # check: the message is dead-lettered and the server sees nothing.
    named = load_webhook_config(env={**env, "VITALTWIN_WEBHOOK_URL": f"http://localhost:{r.port}/"})
    outbox = Outbox(tmp_path / "o.db")
    outbox.enqueue(route(named, [note()]), now_ms())
    assert Deliverer(outbox, named).run_until_idle(5)
    (dead,) = outbox.dead_letters()
    assert "SSRF" in dead.reason
    assert r.requests == []
    # Allowed explicitly, the same receiver works.
    allowed = load_webhook_config(env=env, allow_private=True)
    outbox.enqueue(route(allowed, [note("p2")]), now_ms())
    assert Deliverer(outbox, allowed).run_until_idle(5)
    assert len(r.requests) == 1


def test_retry_after_and_timeouts_against_a_real_server(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    def respond(n: int, req: Received) -> tuple[int, dict[str, str]]:
        if n == 1:
            time.sleep(1.3)  # beyond the 1 s timeout
            return 200, {}
        if n == 2:
            return 503, {"Retry-After": "1"}
        return 200, {}

    r = start(receivers, respond)
    cfg = config(r.url)
    slow = cfg.receivers[0].model_copy(update={"timeout_s": 1.0})
    cfg = cfg.model_copy(update={"receivers": (slow,)})
    outbox = Outbox(tmp_path / "o.db")
    outbox.enqueue(route(cfg, [note()]), now_ms())
    started = time.monotonic()
    stamps: list[float] = []
    original = r.respond
    r.respond = lambda n, req: (stamps.append(time.monotonic()), original(n, req))[1]  # type: ignore[assignment]
    assert Deliverer(outbox, cfg).run_until_idle(15)
    assert len(r.requests) == 3
    assert len(set(r.ids())) == 1
    assert stamps[2] - stamps[1] >= 0.95  # Retry-After: 1 s, although the schedule said 5 ms
    assert time.monotonic() - started < 10


@pytest.mark.timeout(90)
def test_kill_9_mid_flight_then_restart_delivers_everything(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    in_flight = threading.Event()
    release = threading.Event()

    def respond(n: int, req: Received) -> tuple[int, dict[str, str]]:
        if n == 7:
            in_flight.set()
            release.wait(30)  # hold request 7 open while the deliverer is killed
        return 200, {}

    r = start(receivers, respond)
    cfg = config(r.url)
    cfg_file = tmp_path / "webhooks.json"
    data = cfg.model_dump(mode="json")
    data["receivers"][0]["secrets"] = [SECRET]  # SecretStr dumps masked
    cfg_file.write_text(json.dumps(data))
    db = tmp_path / "outbox.db"
    outbox = Outbox(db)
    expected = enqueue_cohort(r.url, outbox, patients=5, per_patient=4)
    all_ids = [w for ws in expected.values() for w in ws]

    cmd = [
        sys.executable,
        "-m",
        "streams.webhooks.delivery",
        "--outbox",
        str(db),
        "--webhook-config",
        str(cfg_file),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        assert in_flight.wait(30), "the deliverer never reached request 7"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        release.set()
    assert outbox.counts()["pending"] > 0
    rerun = subprocess.run(
        [*cmd, "--until-idle", "30"],
        cwd=ROOT,
        env=env,
        timeout=60,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    assert rerun.returncode == 0
    assert outbox.counts() == {"pending": 0, "delivered": 20, "dead": 0}
    ids = r.ids()
    assert set(ids) == set(all_ids)
    assert len(ids) > len(all_ids)  # the request in flight at the kill was sent again ...
    bodies: dict[str, bytes] = {}
    for req in r.requests:  # ... with the same webhook-id and the same body
        assert bodies.setdefault(req.headers["webhook-id"], req.body) == req.body
    assert first_seen_per_patient(r) == expected
    verified(r)
