"""The deliverer: drains the outbox, signs each attempt, retries on schedule, dead-letters.

Per attempt: record it in the outbox (so a crash cannot lose or endlessly repeat it), sign the
stored body with a fresh ``webhook-timestamp`` (receivers reject timestamps older than five
minutes, so a retry hours later must be re-signed; the ``webhook-id`` never changes), POST.

- 2xx: delivered.
- 410 Gone: the receiver is disabled and everything queued for it becomes a dead letter
  (Standard Webhooks: the endpoint asked us to stop). ``Outbox.enable_receiver`` undoes it.
- anything else, a timeout or a refused connection: retry after the next delay of
  ``retry_schedule_s`` (Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
  14 h, 20 h, 24 h) +- ``jitter``, or after ``Retry-After`` when the receiver asks for longer
  (capped at ``max_retry_after_s``); after the last one, a dead letter with the last error.
- an address the SSRF guard refuses: a dead letter at once (retrying cannot help).

A receiver that cannot be reached (refused, timed out) is backed off as a whole until the
failed message's next retry: while it is down, one message probes it on the schedule and the
others wait without spending attempts, so a receiver that is down costs one timeout per retry
step, not one per patient. A message still undelivered once the whole schedule has elapsed
since it was queued (about 3 days) is dead-lettered as expired: an alert that old helps no one.

Run it in-process (``Deliverer.run(stop)`` in a thread next to the runtime) or as its own
process: ``python -m streams.webhooks.delivery --outbox PATH [--webhook-config FILE ...]``.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams import metrics
from streams.errors import StreamsError
from streams.webhooks.config import (
    ReceiverConfig,
    WebhookConfig,
    add_webhook_arguments,
    webhook_config_from_args,
)
from streams.webhooks.errors import SsrfRefused, TransportError
from streams.webhooks.outbox import Outbox, Pending
from streams.webhooks.signing import sign_headers
from streams.webhooks.transport import HttpTransport, Response, Transport

log = logging.getLogger(__name__)

_NEVER_MS = 2**62


@dataclass(slots=True)
class PassReport:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # HTTP dates are GMT by definition; a naive one is malformed
    return max(0.0, when.timestamp() - now_s)


def retry_delay_s(attempts_made: int, config: WebhookConfig, rng: random.Random) -> float | None:
    """Delay before attempt ``attempts_made + 1``, scaled and jittered; None when exhausted."""
    schedule = config.retry_schedule_s
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made] * config.retry_time_scale
    return base * (1.0 + rng.uniform(-config.jitter, config.jitter))


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        config: WebhookConfig,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        batch: int = 100,
    ) -> None:
        self.outbox = outbox
        self.config = config
        self.transport = transport or HttpTransport(config.network_policy())
        self.clock = clock
        self.rng = rng or random.Random()
        self.batch = batch
        self._receivers = {r.name: r for r in config.receivers}
        self._secrets = {r.name: r.signing_secrets() for r in config.receivers}
        self._wake = threading.Event()
        self._backoff: dict[str, float] = {}  # unreachable receiver -> retry time (unix s)
        span = sum(config.retry_schedule_s) * config.retry_time_scale * (1 + config.jitter)
        self._expire_ms = int(span * 1000) + 1

    def wake(self) -> None:
        """Cut the idle wait short (call after enqueueing)."""
        self._wake.set()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _backed_off(self) -> list[str]:
        now = self.clock()
        self._backoff = {r: t for r, t in self._backoff.items() if t > now}
        return list(self._backoff)

    def deliver_due(self) -> PassReport:
        """One pass over every due head-of-line message."""
        report = PassReport()
        gone: set[str] = set()  # disabled during this pass: its messages are dead letters now
        for msg in self.outbox.due(self._now_ms(), self.batch, exclude=self._backed_off()):
            if msg.receiver in self._backoff or msg.receiver in gone:
                continue  # became unreachable (or gone) earlier in this pass
            receiver = self._receivers.get(msg.receiver)
            if receiver is None or not receiver.enabled:
                self.outbox.dead_letter(msg.seq, "receiver no longer configured", self._now_ms())
                report.dead += 1
                continue
            if msg.attempts and self._now_ms() - msg.created_ms > self._expire_ms:
                reason = f"expired undelivered after {msg.attempts} attempts"
                self.outbox.dead_letter(msg.seq, reason, self._now_ms())
                report.dead += 1
                continue
            report.attempted += 1
            started = time.monotonic()
            outcome = self._attempt(msg, receiver)
            metrics.observe_webhook(receiver.name, outcome, time.monotonic() - started)
            if outcome == "delivered":
                report.delivered += 1
            elif outcome in ("dead", "disabled"):
                report.dead += 1
                if outcome == "disabled":
                    gone.add(msg.receiver)
            else:
                report.failed += 1
        return report

    def _attempt(self, msg: Pending, receiver: ReceiverConfig) -> str:
        attempt = msg.attempts + 1
        now = self.clock()
        delay = retry_delay_s(attempt, self.config, self.rng)
        retry_at = _NEVER_MS if delay is None else int((now + delay) * 1000)
        self.outbox.begin_attempt(msg.seq, attempt, retry_at)
        headers = sign_headers(self._secrets[receiver.name], msg.webhook_id, int(now), msg.body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = self.config.user_agent
        try:
            resp = self.transport.post(receiver.url, headers, msg.body, receiver.timeout_s)
        except SsrfRefused as exc:
            log.warning("webhook %s to %s refused: %s", msg.webhook_id, receiver.name, exc)
            self.outbox.dead_letter(msg.seq, f"refused by SSRF guard: {exc}", self._now_ms())
            return "dead"
        except TransportError as exc:
            return self._failed(msg, receiver, attempt, delay, str(exc), None, None, "unreachable")
        self._backoff.pop(receiver.name, None)  # it answered: reachable
        if 200 <= resp.status < 300:
            self.outbox.mark_delivered(msg.seq, resp.status, self._now_ms())
            log.info(
                "webhook %s delivered to %s (attempt %d)", msg.webhook_id, receiver.name, attempt
            )
            return "delivered"
        if resp.status == 410:
            n = self.outbox.disable_receiver(
                receiver.name, "endpoint answered 410 Gone", self._now_ms()
            )
            log.warning(
                "receiver %s answered 410 Gone: disabled, %d messages dead-lettered",
                receiver.name,
                n,
            )
            return "disabled"
        return self._failed(
            msg, receiver, attempt, delay, f"HTTP {resp.status}", resp.status, resp, "failed"
        )

    def _failed(
        self,
        msg: Pending,
        receiver: ReceiverConfig,
        attempt: int,
        delay: float | None,
        error: str,
        status: int | None,
        resp: Response | None,
        outcome: str,
    ) -> str:
        now = self.clock()
        if delay is None:
            reason = f"exhausted {attempt} attempts; last error: {error}"
            self.outbox.dead_letter(msg.seq, reason, self._now_ms())
            log.warning("webhook %s to %s dead-lettered: %s", msg.webhook_id, receiver.name, reason)
            return "dead"
        wait = delay
        after = parse_retry_after(resp.headers.get("retry-after") if resp else None, now)
        if after is not None:
            # The receiver's explicit request wins over a shorter schedule step (never scaled:
            # it is the receiver's clock, not ours), within our cap.
            wait = max(wait, min(after, self.config.max_retry_after_s))
        self.outbox.mark_failed(msg.seq, error, status, int((now + wait) * 1000))
        if outcome == "unreachable":
            self._backoff[receiver.name] = now + wait
        log.info(
            "webhook %s to %s failed (%s), attempt %d; retry in %.1f s",
            msg.webhook_id,
            receiver.name,
            error,
            attempt,
            wait,
        )
        return outcome

    def idle_wait_s(self) -> float:
        """Until the next message is due (bounded by the poll interval, which sees new rows)."""
        now = self.clock()
        waits = [self.config.poll_interval_s]
        nxt = self.outbox.next_due_ms(exclude=self._backed_off())
        if nxt is not None:
            waits.append(nxt / 1000 - now)
        waits += [t - now for t in self._backoff.values()]
        return max(0.0, min(waits))

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (the runtime's thread, or ``main``)."""
        while not stop.is_set():
            try:
                self.deliver_due()
            except (StreamsError, sqlite3.Error):
                # A locked or briefly unavailable outbox must not end delivery for good.
                log.exception("webhook delivery pass failed; retrying")
            self._wake.wait(self.idle_wait_s())
            self._wake.clear()

    def run_until_idle(self, timeout_s: float) -> bool:
        """Deliver until nothing is pending (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.counts()["pending"]:
            if time.monotonic() >= deadline:
                return False
            self.deliver_due()
            self._wake.wait(min(self.idle_wait_s(), max(0.0, deadline - time.monotonic())))
            self._wake.clear()
        return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.webhooks.delivery", description="Deliver queued alert webhooks."
    )
    parser.add_argument("--outbox", type=Path, required=True, help="SQLite outbox file")
    parser.add_argument(
        "--until-idle", type=float, metavar="SECONDS", help="exit when nothing is pending"
    )
    add_webhook_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = webhook_config_from_args(args)
        deliverer = Deliverer(Outbox(args.outbox), config)
    except StreamsError as exc:
        log.error("%s", exc)
        return 2
    if args.until_idle is not None:
        return 0 if deliverer.run_until_idle(args.until_idle) else 1
    stop = threading.Event()
    try:
        deliverer.run(stop)
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
