"""Shared helpers for the webhook tests: notifications and a real HTTP receiver on loopback.

(Named ``test_*`` only so it sits with the files it serves; it holds no tests.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import SecretStr

from streams.webhooks import ReceiverConfig, WebhookConfig
from twin.alerting import Notification, Why
from twin.alerting.book import alert_id, fingerprint, notification_id

T0_MS = 1_767_600_000_000
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, from the Standard Webhooks docs
SECRET_2 = "whsec_" + "c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="


def note(
    pid: str = "pt-1",
    rule: str = "news2_high",
    *,
    status: str = "firing",
    at_ms: int = T0_MS,
    severity: str = "critical",
    seq: int = 0,
) -> Notification:
    fp = fingerprint(pid, rule)
    aid = alert_id(fp, T0_MS + seq)
    reason = "resolved" if status == "resolved" else "fired" if seq == 0 else "repeat"
    return Notification(
        notification_id=notification_id(fp, aid, status, reason, at_ms + seq),
        alert_id=aid,
        fingerprint=fp,
        patient_id=pid,
        ward="ward-7",
        rule=rule,
        kind="news2_band",
        severity=severity,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        at_ms=at_ms + seq,
        starts_at_ms=T0_MS,
        ends_at_ms=at_ms + seq if status == "resolved" else None,
        group_key=f"patient:{pid}",
        why=Why(
            rule=rule,
            kind="news2_band",
            summary="NEWS2 8 (high), threshold 7",
            values={"respiratory_rate": 27.0},
            observed_at_ms={"respiratory_rate": T0_MS},
            news2_total=8,
            news2_band="high",
            news2_points={"respiratory_rate": 3, "pulse": 3, "spo2": 2},
            qsofa_total=1,
            threshold=7,
        ),
        description="NEWS2 >= 7",
    )


def config(url: str, **kw: object) -> WebhookConfig:
    """One receiver at ``url``; loopback allowed explicitly; retry schedule compressed 1000x."""
    receiver = ReceiverConfig(name="r", url=url, secrets=(SecretStr(SECRET),), timeout_s=2)
    defaults: dict[str, object] = {
        "receivers": (receiver,),
        "allowed_networks": ("127.0.0.0/8",),
        "retry_time_scale": 0.001,
        "poll_interval_s": 0.05,
    }
    return WebhookConfig.model_validate({**defaults, **kw})


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1. ``respond(n, received) -> (status, headers)``."""

    respond: Callable[[int, Received], tuple[int, dict[str, str]]] = lambda n, r: (200, {})
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, port: int = 0) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                got = Received(
                    {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                with outer.lock:
                    outer.requests.append(got)
                    n = len(outer.requests)
                status, headers = outer.respond(n, got)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client is gone (killed mid-flight): nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]
