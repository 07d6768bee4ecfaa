"""Server-side request forgery guard: receivers may not point at our own network by default.

A receiver URL comes from configuration someone typed; without a guard, ``http://10.0.0.5``,
``http://169.254.169.254`` (cloud metadata) or ``http://localhost:8086`` would let a config
edit reach internal services with our signed requests. Every address the host resolves to must
be globally routable, unless the config allows private networks wholesale or lists the network
explicitly. The check runs at connect time on the addresses actually dialled (the transport
connects to the vetted IP, never re-resolving), so DNS rebinding between check and use cannot
slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from streams.webhooks.errors import SsrfRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, allow_private: bool, networks: Sequence[str]) -> NetworkPolicy:
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be dialled, or None when it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
        if any(address in net for net in self.allowed_networks):
            return None
        if address.is_multicast or address.is_unspecified:
            return "multicast or unspecified address"
        if address.is_global:
            return None
        if self.allow_private and not address.is_reserved:
            return None
        if address.is_loopback:
            return "loopback address"
        if address.is_link_local:
            return "link-local address (e.g. cloud metadata)"
        return "private or reserved address"


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]  # vetted IPs, in resolver order


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL; refuses anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SsrfRefused("receiver URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise SsrfRefused("receiver URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SsrfRefused("receiver URL has an invalid port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def literal_refusal(url: str, policy: NetworkPolicy) -> str | None:
    """Config-time check: refuse a URL whose host is an IP literal the policy refuses."""
    _, host, _, _ = parse_url(url)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked when it is resolved, at connect time
    return policy.refusal(address)


def vet(url: str, policy: NetworkPolicy, resolver: Resolver = system_resolver) -> Target:
    """Resolve ``url`` and keep only addresses the policy permits; refuse if any is refused.

    Refusing when *any* address is bad (not just skipping it) stops a name that resolves to
    one public and one internal address from being used to reach the internal one.
    """
    scheme, host, port, path = parse_url(url)
    try:
        addresses = [host] if _is_ip(host) else list(resolver(host, port))
    except OSError as exc:
        raise SsrfRefused(f"cannot resolve receiver host: {exc.strerror or exc}") from None
    if not addresses:
        raise SsrfRefused("receiver host resolves to no address")
    for text in addresses:
        reason = policy.refusal(ipaddress.ip_address(text.split("%", 1)[0]))
        if reason is not None:
            raise SsrfRefused(f"receiver resolves to a {reason}; allow it in the webhook config")
    return Target(scheme, host, port, path, tuple(addresses))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
