"""Standard Webhooks 1.0 signatures: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signed content is ``{id}.{timestamp}.{body}``; the signature is ``v1,`` + base64 of its
HMAC-SHA256 under the secret's bytes. A secret is ``whsec_`` + base64 of 24-64 random bytes.
During key rotation a receiver holds several secrets and we sign with each, space-separated,
so the receiver verifies with whichever it knows. ``verify`` is what a receiver does (and what
our tests and examples use): constant-time comparison and a 5-minute timestamp tolerance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streams.webhooks.errors import SecretError, SignatureError

PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
TOLERANCE_S = 300


@dataclass(frozen=True, slots=True)
class Secret:
    """A signing key. ``repr`` never shows it (configs get logged)."""

    key: bytes

    @classmethod
    def parse(cls, text: str) -> Secret:
        text = text.strip()
        if not text.startswith(PREFIX):
            raise SecretError("a webhook secret starts with 'whsec_'")
        try:
            key = base64.b64decode(text[len(PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise SecretError("a webhook secret is whsec_ + standard base64") from None
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise SecretError(
                f"a webhook secret holds {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes,"
                f" not {len(key)}"
            )
        return cls(key)

    def __str__(self) -> str:
        return PREFIX + base64.b64encode(self.key).decode("ascii")

    def __repr__(self) -> str:
        return "Secret(<redacted>)"


def generate_secret(n_bytes: int = 32) -> str:
    """A fresh ``whsec_`` secret (for ``vitaltwin`` setup and tests)."""
    return str(Secret(secrets.token_bytes(n_bytes)))


def signature(secret: Secret, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{id}.{timestamp}.{body}``."""
    content = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret.key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(
    secrets_: Sequence[Secret], msg_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every given secret."""
    if not secrets_:
        raise SecretError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp_s, body) for s in secrets_),
    }


def verify(
    secrets_: Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_s: float,
    tolerance_s: int = TOLERANCE_S,
) -> str:
    """Check a delivery as a receiver would; returns the webhook id or raises SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    ts_text = lower.get("webhook-timestamp")
    sigs = lower.get("webhook-signature")
    if not (msg_id and ts_text and sigs):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(ts_text)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if abs(now_s - ts) > tolerance_s:
        raise SignatureError("webhook-timestamp outside the tolerance")
    for secret in secrets_:
        expected = signature(secret, msg_id, ts, body).encode()
        for candidate in sigs.split(" "):
            if hmac.compare_digest(expected, candidate.encode()):
                return msg_id
    raise SignatureError("no signature matches")
