"""The deliverer and outbox with an injected clock and transport (no sockets, no sleeping)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_webhooks_support import SECRET, T0_MS, config, note

from streams.webhooks import (
    STANDARD_SCHEDULE_S,
    Deliverer,
    Outbox,
    ReceiverConfig,
    Response,
    SsrfRefused,
    TransportError,
    route,
)
from streams.webhooks.delivery import parse_retry_after, retry_delay_s
from streams.webhooks.ssrf import NetworkPolicy, vet


class Clock:
    def __init__(self) -> None:
        self.t = T0_MS / 1000

    def __call__(self) -> float:
        return self.t


class FakeTransport:
    """Answers from a script: a status, (status, headers), or an exception to raise."""

    def __init__(self, script: list[object] | None = None, default: object = 200) -> None:
        self.script = list(script or [])
        self.default = default
        self.sent: list[tuple[str, dict[str, str], bytes, float]] = []

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float) -> Response:
        self.sent.append((url, dict(headers), body, timeout_s))
        step = self.script.pop(0) if self.script else self.default
        if isinstance(step, Exception):
            raise step
        if isinstance(step, tuple):
            return Response(step[0], step[1])
        assert isinstance(step, int)
        return Response(step, {})


def make(tmp_path: Path, transport: FakeTransport, **kw: object) -> tuple[Deliverer, Outbox, Clock]:
    clock = Clock()
    cfg = config("https://hooks.example.org/x", retry_time_scale=1.0, jitter=0.0, **kw)
    outbox = Outbox(tmp_path / "outbox.db")
    return Deliverer(outbox, cfg, transport=transport, clock=clock), outbox, clock


def test_enqueue_is_idempotent_per_webhook_id(tmp_path: Path) -> None:
    d, outbox, _ = make(tmp_path, FakeTransport())
    msgs = route(d.config, [note("p1"), note("p2")])  # one message per patient
    assert outbox.enqueue(msgs, T0_MS) == 2
    assert outbox.enqueue(msgs, T0_MS) == 0
    assert outbox.enqueue(route(d.config, [note("p1"), note("p2")]), T0_MS) == 0
    assert outbox.counts()["pending"] == 2


def test_retries_follow_the_standard_schedule_then_dead_letter(tmp_path: Path) -> None:
    transport = FakeTransport(default=500)
    d, outbox, clock = make(tmp_path, transport)
    outbox.enqueue(route(d.config, [note()]), T0_MS)
    times = []
    for _ in range(20):
        due = outbox.next_due_ms()
        if due is None:
            break
        clock.t = due / 1000
        times.append(clock.t - T0_MS / 1000)
        d.deliver_due()
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert len(times) == len(STANDARD_SCHEDULE_S) == 10
    assert gaps == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    (dead,) = outbox.dead_letters()
    assert dead.attempts == 10
    assert dead.reason == "exhausted 10 attempts; last error: HTTP 500"
    ids = {h["webhook-id"] for _, h, _, _ in transport.sent}
    stamps = [h["webhook-timestamp"] for _, h, _, _ in transport.sent]
    assert len(ids) == 1  # one webhook id for every attempt ...
    assert len(set(stamps)) == 10  # ... each signed afresh


def test_jitter_stays_within_bounds() -> None:
    cfg = config("https://h.example.org/", jitter=0.2, retry_time_scale=1.0)
    rng = random.Random(7)
    delays = [retry_delay_s(2, cfg, rng) for _ in range(500)]
    assert all(d is not None and 240 <= d <= 360 for d in delays)
    assert len({round(d or 0) for d in delays}) > 50
    assert retry_delay_s(len(STANDARD_SCHEDULE_S), cfg, rng) is None


def test_retry_after_is_honoured_and_capped(tmp_path: Path) -> None:
    transport = FakeTransport([(429, {"retry-after": "120"}), (503, {"retry-after": "999999"})])
    d, outbox, clock = make(tmp_path, transport, max_retry_after_s=3600)
    outbox.enqueue(route(d.config, [note()]), T0_MS)
    d.deliver_due()
    assert outbox.next_due_ms() == T0_MS + 120_000  # not the schedule's 5 s
    clock.t += 120
    d.deliver_due()
    assert outbox.next_due_ms() == T0_MS + 120_000 + 3_600_000


def test_parse_retry_after() -> None:
    assert parse_retry_after("30", 0) == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 60) == 60
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def test_a_later_alert_never_overtakes_an_earlier_one_for_the_same_patient(tmp_path: Path) -> None:
    transport = FakeTransport([500], default=200)
    d, outbox, clock = make(tmp_path, transport)
    outbox.enqueue(route(d.config, [note("p1", seq=0)]), T0_MS)
    outbox.enqueue(route(d.config, [note("p1", seq=1)]), T0_MS)
    outbox.enqueue(route(d.config, [note("p2", seq=0)]), T0_MS)
    d.deliver_due()  # p1#0 fails, p1#1 waits behind it, p2#0 goes
    assert len(transport.sent) == 2
    assert outbox.counts() == {"pending": 2, "delivered": 1, "dead": 0}
    clock.t += 5
    d.deliver_due()
    d.deliver_due()
    order = [h["webhook-id"] for _, h, _, _ in transport.sent]
    p1 = outbox.webhook_ids()
    assert order == [p1[0], p1[2], p1[0], p1[1]]
    assert outbox.counts()["delivered"] == 3


def test_gone_disables_the_receiver_and_dead_letters_its_queue(tmp_path: Path) -> None:
    transport = FakeTransport([410])
    d, outbox, _ = make(tmp_path, transport)
    outbox.enqueue(route(d.config, [note("p1")]), T0_MS)
    outbox.enqueue(route(d.config, [note("p2")]), T0_MS)
    d.deliver_due()
    assert len(transport.sent) == 1
    assert outbox.counts() == {"pending": 0, "delivered": 0, "dead": 2}
    assert "410" in outbox.disabled_receivers()["r"]
    outbox.enqueue(route(d.config, [note("p3")]), T0_MS)
    assert outbox.counts()["dead"] == 3  # later messages go straight to the dead letters
    assert all("410" in dl.reason for dl in outbox.dead_letters())
    assert outbox.enable_receiver("r")


def test_an_unreachable_receiver_costs_one_attempt_per_pass(tmp_path: Path) -> None:
    transport = FakeTransport(default=TransportError("ConnectionRefusedError"))
    d, outbox, _ = make(tmp_path, transport)
    outbox.enqueue(route(d.config, [note(f"p{i}") for i in range(5)]), T0_MS)
    report = d.deliver_due()
    assert (report.attempted, report.failed) == (1, 1)
    assert d.deliver_due().attempted == 0  # backed off until the failed message's retry
    assert outbox.counts()["pending"] == 5


def test_ssrf_refusal_is_permanent(tmp_path: Path) -> None:
    transport = FakeTransport([SsrfRefused("loopback address")])
    d, outbox, _ = make(tmp_path, transport)
    outbox.enqueue(route(d.config, [note()]), T0_MS)
    d.deliver_due()
    (dead,) = outbox.dead_letters()
    assert dead.reason.startswith("refused by SSRF guard")


def test_routing_by_severity_rule_and_resolved(tmp_path: Path) -> None:
    receivers = (
        ReceiverConfig(
            name="pager",
            url="https://a.example.org/",
            secrets=(SecretStr(SECRET),),
            min_severity="critical",
        ),
        ReceiverConfig(
            name="sepsis",
            url="https://b.example.org/",
            secrets=(SecretStr(SECRET),),
            rules=("qsofa",),
            send_resolved=False,
        ),
    )
    cfg = config("https://c.example.org/").model_copy(update={"receivers": receivers})
    notes = [
        note("p1", "news2_high", severity="critical"),
        note("p1", "qsofa", severity="warning"),
        note("p2", "qsofa", severity="warning", status="resolved"),
    ]
    got = {(m.receiver, m.ordering_key, len(m.notification_ids)) for m in route(cfg, notes)}
    assert got == {("pager", "p1", 1), ("sepsis", "p1", 1)}


def test_vet_refuses_non_public_addresses() -> None:
    def resolver_for(*addresses: str):  # type: ignore[no-untyped-def]
        return lambda host, port: list(addresses)

    strict = NetworkPolicy()
    assert vet("https://h.example.org/x", strict, resolver_for("93.184.216.34")).addresses == (
        "93.184.216.34",
    )
    for bad in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.9",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ):
        with pytest.raises(SsrfRefused):
            vet("https://h.example.org/", strict, resolver_for(bad))
    with pytest.raises(SsrfRefused):  # one bad address poisons the name
        vet("https://h.example.org/", strict, resolver_for("93.184.216.34", "10.0.0.1"))
    with pytest.raises(SsrfRefused):
        vet("http://10.0.0.1/", strict)
    with pytest.raises(SsrfRefused):
        vet("ftp://h.example.org/", strict)
    with pytest.raises(SsrfRefused):
        vet("https://user:pw@h.example.org/", strict)
    private = NetworkPolicy(allow_private=True)
    assert vet("http://10.0.0.1:8080/", private).port == 8080
    with pytest.raises(SsrfRefused):
        vet("http://224.0.0.1/", private)  # multicast never
    listed = NetworkPolicy.from_config(False, ["127.0.0.0/8"])
    assert vet("http://127.0.0.1:9/", listed).addresses == ("127.0.0.1",)
    with pytest.raises(SsrfRefused):
        vet("http://10.0.0.1/", listed)
