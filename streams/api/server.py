"""Run the API with uvicorn: in the foreground (``vitaltwin serve``) or on a thread (demo, tests).

uvicorn's own access log is off: it would log every path, and paths carry patient tokens. The
API logs route templates instead (``streams.api.middleware.Observe``).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from streams.errors import StreamsError


def _config(app: Any, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        access_log=False,
        log_config=None,  # keep the process's logging setup (the CLI's), do not replace it
        timeout_graceful_shutdown=5,
        lifespan="off",
        **extra,
    )


@dataclass
class ServerHandle:
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int
    app: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        hub = getattr(getattr(self.app, "state", None), "hub", None)
        if hub is not None:
            hub.close()  # ends the event streams, which would otherwise hold the shutdown
        self.server.should_exit = True
        self.thread.join(timeout_s)


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def start_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, ready_timeout_s: float = 15.0
) -> ServerHandle:
    """Serve ``app`` on a background thread; port 0 picks a free port (see ``handle.port``)."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise StreamsError(f"API server did not start on {host}:{sock.getsockname()[1]}")
        time.sleep(0.02)
    return ServerHandle(server, thread, host, sock.getsockname()[1], app)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve_forever(app: Any, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM.

    uvicorn shuts down gracefully on either signal and then raises it again with the handlers
    that were in place before it started. For SIGTERM that would be the default action (die at
    once), skipping the callers' ``finally`` blocks that close stores and flush producers; so
    SIGTERM is made to end the process as a clean ``SystemExit(0)`` instead.
    """
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        uvicorn.Server(_config(app, host=host, port=port)).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
