"""HTTP POST for webhook delivery: stdlib ``http.client``, pinned to vetted IPs, bounded.

``Transport`` is the seam: the deliverer takes any object with ``post``; unit tests pass a fake,
integration tests and production use ``HttpTransport`` against real servers. ``HttpTransport``
resolves and vets the URL on every request (``ssrf.vet``), connects to the vetted address
itself (TLS still verifies the certificate against the host name), never follows redirects
(a 3xx is a failed delivery: a redirect could point anywhere), and reads at most 64 KiB of the
response, under one timeout per socket operation.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from streams.webhooks.errors import TransportError
from streams.webhooks.ssrf import NetworkPolicy, Resolver, system_resolver, vet

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


class Transport(Protocol):
    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float) -> Response:
        """Send one POST. Raises ``TransportError`` (retryable) or ``SsrfRefused``."""
        ...


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._ctx = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self.host)


@dataclass
class HttpTransport:
    policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    resolver: Resolver = system_resolver
    tls_context: ssl.SSLContext | None = None

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float) -> Response:
        target = vet(url, self.policy, self.resolver)
        last: Exception | None = None
        for address in target.addresses:
            conn: http.client.HTTPConnection
            if target.scheme == "https":
                ctx = self.tls_context or ssl.create_default_context()
                conn = _PinnedHTTPS(target.host, target.port, address, timeout_s, ctx)
            else:
                conn = _PinnedHTTP(target.host, target.port, address, timeout_s)
            try:
                conn.connect()
            except OSError as exc:
                # Nothing was sent yet, so the next address cannot cause a duplicate.
                last = exc
                conn.close()
                continue
            try:
                conn.request("POST", target.path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read(MAX_RESPONSE_BYTES)
                return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            except (OSError, http.client.HTTPException) as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}") from None
            finally:
                conn.close()
        raise TransportError(f"{type(last).__name__}: {last}")
