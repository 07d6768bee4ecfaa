"""Errors raised by the twin core.

Exception tree::

    TwinError
    └── InvalidEvent        an input that must not enter a twin; carries a machine-readable
                            ``reason`` (one of ``Reason``) and a human ``detail``

Adapters (Kafka agents, the embedded runtime, the HTTP API) catch ``InvalidEvent`` and route
the original payload to the dead-letter store with ``reason``; nothing is guessed or dropped.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an input was rejected. Stable strings: dashboards and dead-letter queries key on them."""

    MALFORMED = "malformed"
    SCHEMA_VIOLATION = "schema_violation"
    MISSING_ELEMENT = "missing_element"
    UNKNOWN_CODE = "unknown_code"
    UNSUPPORTED_CODE_SYSTEM = "unsupported_code_system"
    UNKNOWN_UNIT = "unknown_unit"
    NON_FINITE_VALUE = "non_finite_value"
    NAIVE_TIMESTAMP = "naive_timestamp"
    IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"
    UNSUPPORTED_RESOURCE = "unsupported_resource"
    INVALID_STATUS = "invalid_status"
    OVERSIZED = "oversized"
    PATIENT_MISMATCH = "patient_mismatch"


class TwinError(Exception):
    """Base of every error the twin core raises."""


class InvalidEvent(TwinError):
    """An input was rejected; ``reason`` is machine-readable, ``detail`` says exactly what."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
