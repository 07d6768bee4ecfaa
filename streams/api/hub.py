"""Live updates: runtimes publish changed twins, the API streams them as Server-Sent Events.

``EventHub.publish(outcome, states)`` has the signature of an embedded runtime ``on_batch``
hook, so it can be passed to ``EmbeddedRuntime(on_batch=[..., hub.publish])``; the Kafka view
calls ``publish_states``. Publishing must never slow the runtime down: it only copies the touched
states into a pending map (nothing at all when nobody is listening). A background thread
coalesces what is pending every ``interval_s``, builds the tiles (``summarise``, which reads the
alert store) and hands each subscriber a message through its event loop.

A subscriber that cannot keep up (its queue is full) is sent one ``resync`` event instead of
the messages it missed: the page then reloads the ward from the API instead of showing stale
tiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.api.models import PatientSummary
from twin import TwinState

log = logging.getLogger(__name__)

QUEUE_SIZE = 64


@dataclass(frozen=True, slots=True)
class Message:
    event: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        payload = json.dumps(self.data, separators=(",", ":"))
        return f"event: {self.event}\ndata: {payload}\n\n".encode()


class Subscription:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def offer(self, message: Message) -> None:
        """Called on the subscriber's loop."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            # Make room for the one message that tells the page to reload.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(Message("resync", {}))

    async def next(self, timeout_s: float) -> Message | None:
        try:
            message = await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None
        if message.event == "resync":
            self.overflowed = False
        return message


class EventHub:
    def __init__(self, *, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.summarise: Callable[[TwinState], PatientSummary] | None = None
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._pending: dict[str, TwinState] = {}
        self._alerts_pending: set[str] = set()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0  # messages handed to subscribers (tests, metrics)

    # ---- producers (any thread) -------------------------------------------------------------

    def publish(self, outcome: Any, states: Mapping[str, TwinState]) -> None:
        """``on_batch`` hook: the batch's touched twins (``outcome.touched``) changed.

        Their tiles carry their active alerts, read when the tiles are built (after the alert
        stage, an earlier hook, has recorded the batch's notifications), so a batch needs no
        separate ``alerts`` event.
        """
        touched = getattr(outcome, "touched", None)
        changed = states if touched is None else {p: states[p] for p in touched if p in states}
        self.publish_states(changed)

    def publish_states(self, states: Mapping[str, TwinState]) -> None:
        if not self._subs or not states:
            return
        # The runtime goes on mutating its states: keep copies, taken on the caller's thread.
        copies = {pid: st.copy() for pid, st in states.items()}
        with self._lock:
            self._pending.update(copies)
        self._wake.set()

    def publish_alerts(self, patient_ids: Iterable[str]) -> None:
        """Alerts of these patients may have changed (fired, resolved, acknowledged)."""
        if not self._subs:
            return
        with self._lock:
            self._alerts_pending.update(patient_ids)
        self._wake.set()

    # ---- consumers (the API's event loop) ---------------------------------------------------

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subs.append(sub)
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Tell every stream to end (so a server can shut down without waiting on them)."""
        self.broadcast([Message("bye", {})])
        self._closed.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # ---- the coalescing thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            if self._closed.is_set():
                return
            # Coalesce: whatever arrives within the interval goes out as one message.
            self._closed.wait(self.interval_s)
            with self._lock:
                self._wake.clear()
                pending, self._pending = self._pending, {}
                alerts, self._alerts_pending = self._alerts_pending, set()
            try:
                self._dispatch(pending, alerts)
            except Exception:  # keep streaming whatever one bad twin did
                log.exception("live update failed")

    def _dispatch(self, pending: dict[str, TwinState], alerts: set[str]) -> None:
        messages = []
        if pending and self.summarise is not None:
            items = [self.summarise(st).model_dump(mode="json") for st in pending.values()]
            messages.append(Message("patients", {"items": items}))
        if alerts:
            messages.append(Message("alerts", {"patient_ids": sorted(alerts)}))
        self.broadcast(messages)

    def broadcast(self, messages: list[Message]) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            for message in messages:
                with contextlib.suppress(RuntimeError):  # the subscriber's loop has closed
                    sub.loop.call_soon_threadsafe(sub.offer, message)
                    self.published += 1
