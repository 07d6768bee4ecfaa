"""Errors the HTTP API answers with, and the one error body every route uses.

Every non-2xx response carries ``{"error": {"code": ..., "message": ..., "details": [...]}}``;
``code`` is a stable machine-readable string (the table in docs/api.md), ``message`` is for
people and never repeats a token or a patient identifier from the request.

Exception tree::

    StreamsError
    └── ApiError            an HTTP error with a status, a code and a message
"""

from __future__ import annotations

from typing import Any

from streams.errors import StreamsError


class ApiError(StreamsError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


# HTTP status -> the code used when a framework error (404 route, 405 method) has no code of ours.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
