"""Errors of webhook delivery (all are ``streams.errors.StreamsError``).

Exception tree::

    StreamsError
    ├── ConfigError            (streams.errors) a receiver or the webhook config is invalid
    └── WebhookError
        ├── SecretError        a secret is not ``whsec_`` + base64 of 24-64 bytes
        ├── SignatureError     a signature does not verify (or its timestamp is off)
        ├── SsrfRefused        the URL resolves to an address the policy refuses
        └── TransportError     the request did not complete (connect, timeout, reset)
"""

from __future__ import annotations

from streams.errors import StreamsError


class WebhookError(StreamsError):
    """Base of webhook signing and delivery errors."""


class SecretError(WebhookError):
    pass


class SignatureError(WebhookError):
    pass


class SsrfRefused(WebhookError):
    """A receiver URL points at a private, loopback, link-local or otherwise refused address."""


class TransportError(WebhookError):
    """The HTTP exchange failed before a status line arrived (retryable)."""
