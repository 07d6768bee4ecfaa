"""The HTTP API and the ward dashboard it serves (FastAPI).

``create_app(view, auth=...)`` builds the application over a ``TwinView``; what else it can do
depends on what it is given: an ``AlertStore`` for alert commands, an ``Ingestor`` for POSTed
data, an ``EventHub`` for live updates. Routes are documented in docs/api.md and in the OpenAPI
schema at ``/api/v1/openapi.json``.

Public routes carry no patient data: the ward page's static files, ``/healthz`` and the
OpenAPI schema. Everything else needs a bearer token (``streams.api.auth``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboards import WARD_DIR
from streams import metrics
from streams.alert_store import AlertStore
from streams.api.auth import Permission, Principal, TokenAuth
from streams.api.errors import STATUS_CODES, ApiError, error_body
from streams.api.hub import EventHub, Message
from streams.api.ingest import Ingestor
from streams.api.middleware import BodyLimit, Observe
from streams.api.models import (
    MAX_PAGE,
    Alert,
    AlertCommandIn,
    CommandReceipt,
    ErrorBody,
    History,
    IngestReceipt,
    Page,
    PatientSummary,
    SilenceIn,
    Twin,
)
from streams.api.views import TwinView
from streams.ingress import SourceKind
from twin.alerting import AlertCommand
from twin.events import to_ms
from twin.signals import Signal

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_BODY_BYTES = 1 << 20
DAY_MS = 86_400_000
KEEPALIVE_S = 15.0
PUBLIC_PATHS = frozenset({"/", "/patients/{patient_id}", "/healthz", f"{API}/openapi.json"})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": STATUS_CODES[s]} for s in statuses}


READ_ERRORS = _errors(401, 403, 422)
ACT_ERRORS = _errors(400, 401, 403, 404, 409, 413, 422, 503)
INGEST_ERRORS = _errors(401, 403, 413, 422, 503)

PatientId = Annotated[str, PathParam(min_length=1, max_length=128)]
AlertId = Annotated[str, PathParam(min_length=1, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

_WEARABLE_SAMPLE = {
    "type": "object",
    "required": ["patient_id", "observed_at", "code", "value", "unit"],
    "properties": {
        "patient_id": {"type": "string", "description": "MRN or token; pseudonymised at ingress"},
        "device_id": {"type": "string"},
        "observed_at": {"type": "string", "format": "date-time"},
        "code": {"type": "string", "description": "LOINC code, e.g. 8867-4 (heart rate)"},
        "value": {"type": "number"},
        "unit": {"type": "string", "description": "UCUM unit, e.g. /min"},
        "source": {"type": "string"},
    },
}
_WEARABLE_BODY = {
    "oneOf": [
        _WEARABLE_SAMPLE,
        {"type": "array", "items": _WEARABLE_SAMPLE, "maxItems": 5000},
        {
            "type": "object",
            "required": ["samples"],
            "properties": {"samples": {"type": "array", "items": _WEARABLE_SAMPLE}},
        },
    ]
}
_FHIR_BODY = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "examples": ["Observation", "Bundle"]}},
    "additionalProperties": True,
}


_bearer = HTTPBearer(auto_error=False, description="API token (see docs/api.md: roles)")


def _require(permission: Permission) -> Callable[..., Principal]:
    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        header = None if credentials is None else f"Bearer {credentials.credentials}"
        auth: TokenAuth = request.app.state.auth
        return auth.check(header, permission)

    return check


Reader = Annotated[Principal, Depends(_require(Permission.READ))]
Clinician = Annotated[Principal, Depends(_require(Permission.ACT))]
Ingester = Annotated[Principal, Depends(_require(Permission.INGEST))]


def _ingest_openapi(schema: dict[str, Any], media: tuple[str, ...]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {m: {"schema": schema} for m in media},
        }
    }


def create_app(
    view: TwinView,
    *,
    auth: TokenAuth,
    alerts: AlertStore | None = None,
    ingestor: Ingestor | None = None,
    hub: EventHub | None = None,
    clock: Clock = utc_now,
    max_body_bytes: int = MAX_BODY_BYTES,
    static_dir: Path = WARD_DIR,
) -> FastAPI:
    hub = hub or EventHub()
    hub.summarise = view.summarise
    app = FastAPI(
        title="vitaltwin",
        version="1",
        summary="Live patient twins: ward view, history, alerts, ingestion.",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # Swagger UI loads its assets from a CDN; the schema is served instead
        redoc_url=None,
    )
    app.state.view = view
    app.state.hub = hub
    app.state.auth = auth

    # ---- errors: one body everywhere ----------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse(
            error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Location and reason only: the offending input may be an identifier.
        details = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse(error_body("invalid_request", "request is invalid", details), 422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s in %s", type(exc).__name__, request.method, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error"), 500)

    # ---- public: no patient data ----------------------------------------------------------

    index = static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def ward_page() -> FileResponse:
        return FileResponse(index, media_type="text/html")

    @app.get("/patients/{patient_id}", include_in_schema=False)
    async def patient_page(patient_id: PatientId) -> FileResponse:
        return FileResponse(index, media_type="text/html")

    app.mount("/static", StaticFiles(directory=static_dir), name="static")

    @app.get("/healthz", tags=["operations"], summary="Liveness and readiness (no data)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok" if view.ready() else "loading"}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **READ_ERRORS},
    )
    async def prometheus(principal: Reader) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # ---- reads --------------------------------------------------------------------------------

    @app.get(
        f"{API}/patients",
        tags=["patients"],
        responses=READ_ERRORS,
        summary="Patients, most at risk first",
    )
    def patients(
        principal: Reader,
        limit: Limit = 50,
        offset: Offset = 0,
        ward: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Page[PatientSummary]:
        return view.patients_by_risk(limit, offset, ward)

    @app.get(
        f"{API}/patients/{{patient_id}}",
        tags=["patients"],
        responses={**READ_ERRORS, **_errors(404)},
        summary="One patient's twin",
    )
    def patient(principal: Reader, patient_id: PatientId) -> Twin:
        found = view.twin(patient_id)
        if found is None:
            raise ApiError(404, "not_found", "no such patient")
        return found

    @app.get(
        f"{API}/patients/{{patient_id}}/history",
        tags=["patients"],
        responses={**READ_ERRORS, **_errors(404)},
        summary="A signal's values over a time range",
    )
    def history(
        principal: Reader,
        patient_id: PatientId,
        signal: Signal,
        start_ms: Annotated[int | None, Query(ge=0, le=1 << 52)] = None,
        end_ms: Annotated[int | None, Query(ge=0, le=1 << 52)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 2000,
        offset: Offset = 0,
    ) -> History:
        if end_ms is None:
            state = view.twin(patient_id)
            if state is None:
                raise ApiError(404, "not_found", "no such patient")
            end_ms = max(state.watermark_ms, 0) + 1
        if start_ms is None:
            start_ms = max(end_ms - DAY_MS, 0)
        if start_ms >= end_ms:
            raise ApiError(422, "invalid_request", "start_ms must be before end_ms")
        found = view.history(patient_id, signal, start_ms, end_ms, limit, offset)
        if found is None:
            raise ApiError(404, "not_found", "no such patient")
        return found

    @app.get(
        f"{API}/alerts", tags=["alerts"], responses=READ_ERRORS, summary="Alerts, newest first"
    )
    def list_alerts(
        principal: Reader,
        status: Annotated[str | None, Query(pattern="^(firing|acknowledged|resolved)$")] = None,
        patient_id: Annotated[str | None, Query(max_length=128)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[Alert]:
        return view.alerts(status=status, patient_id=patient_id, limit=limit, offset=offset)

    @app.get(
        f"{API}/alerts/{{alert_id}}",
        tags=["alerts"],
        responses={**READ_ERRORS, **_errors(404)},
        summary="One alert",
    )
    def get_alert(principal: Reader, alert_id: AlertId) -> Alert:
        found = view.alert(alert_id)
        if found is None:
            raise ApiError(404, "not_found", "no such alert")
        return found

    # ---- alert commands -----------------------------------------------------------------------

    def submit(principal: Principal, fields: dict[str, Any]) -> CommandReceipt:
        if alerts is None:
            raise ApiError(503, "unavailable", "alert commands are not configured")
        now = clock()
        try:
            cmd = AlertCommand(by=principal.name, at_ms=to_ms(now), **fields)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ApiError(422, "invalid_request", str(first["msg"])) from None
        audit = alerts.submit(cmd, to_ms(now))
        hub.publish_alerts([cmd.patient_id])
        found = view.alert(cmd.alert_id) if cmd.alert_id else None
        return CommandReceipt(
            audit_id=audit, command_id=cmd.command_id, action=cmd.action, alert=found
        )

    def on_alert(alert_id: str, expect: str | None) -> Alert:
        found = view.alert(alert_id)
        if found is None:
            raise ApiError(404, "not_found", "no such alert")
        if expect is not None and found.status != expect:
            raise ApiError(409, "conflict", f"alert is {found.status}, not {expect}")
        return found

    @app.post(
        f"{API}/alerts/{{alert_id}}/acknowledge",
        tags=["alerts"],
        status_code=202,
        responses=ACT_ERRORS,
        summary="Acknowledge a firing alert",
    )
    def acknowledge(
        principal: Clinician, alert_id: AlertId, body: AlertCommandIn | None = None
    ) -> CommandReceipt:
        found = on_alert(alert_id, "firing")
        return submit(
            principal,
            {
                "action": "acknowledge",
                "patient_id": found.patient_id,
                "alert_id": alert_id,
                "note": body.note if body else None,
            },
        )

    @app.post(
        f"{API}/alerts/{{alert_id}}/unacknowledge",
        tags=["alerts"],
        status_code=202,
        responses=ACT_ERRORS,
        summary="Withdraw an acknowledgement",
    )
    def unacknowledge(
        principal: Clinician, alert_id: AlertId, body: AlertCommandIn | None = None
    ) -> CommandReceipt:
        found = on_alert(alert_id, "acknowledged")
        return submit(
            principal,
            {
                "action": "unacknowledge",
                "patient_id": found.patient_id,
                "alert_id": alert_id,
                "note": body.note if body else None,
            },
        )

    @app.post(
        f"{API}/alerts/{{alert_id}}/annotate",
        tags=["alerts"],
        status_code=202,
        responses=ACT_ERRORS,
        summary="Label an alert (false alarm, treated, ...)",
    )
    def annotate(principal: Clinician, alert_id: AlertId, body: AlertCommandIn) -> CommandReceipt:
        found = on_alert(alert_id, None)
        return submit(
            principal,
            {
                "action": "annotate",
                "patient_id": found.patient_id,
                "alert_id": alert_id,
                "note": body.note,
                "label": body.label,
            },
        )

    @app.post(
        f"{API}/patients/{{patient_id}}/silences",
        tags=["alerts"],
        status_code=202,
        responses=ACT_ERRORS,
        summary="Mute a patient's alerts for a while",
    )
    def silence(principal: Clinician, patient_id: PatientId, body: SilenceIn) -> CommandReceipt:
        if view.twin(patient_id) is None:
            raise ApiError(404, "not_found", "no such patient")
        ends = to_ms(clock()) + int(body.minutes * 60_000)
        return submit(
            principal,
            {
                "action": "silence",
                "patient_id": patient_id,
                "rule": body.rule,
                "ends_ms": ends,
                "note": body.reason,
            },
        )

    # ---- ingestion ----------------------------------------------------------------------------

    async def ingest(kind: SourceKind, request: Request) -> JSONResponse:
        if ingestor is None:
            raise ApiError(503, "unavailable", "ingestion is not configured")
        body = await request.body()
        # The ingestor commits to SQLite or flushes a Kafka producer: keep it off the loop.
        got = await asyncio.to_thread(ingestor.ingest, kind, body)
        if got.received > 0 and got.accepted == 0:
            details = [d.model_dump() for d in got.dead_lettered]
            return JSONResponse(
                error_body("dead_lettered", "no item was accepted; see the dead letters", details),
                422,
            )
        return JSONResponse(got.model_dump(), 202)

    @app.post(
        f"{API}/ingest/wearable",
        tags=["ingestion"],
        status_code=202,
        response_model=IngestReceipt,
        responses=INGEST_ERRORS,
        summary="Wearable samples: one, a list, or {samples: [...]}",
        openapi_extra=_ingest_openapi(_WEARABLE_BODY, ("application/json",)),
    )
    async def ingest_wearable(principal: Ingester, request: Request) -> JSONResponse:
        return await ingest(SourceKind.WEARABLE, request)

    @app.post(
        f"{API}/ingest/fhir",
        tags=["ingestion"],
        status_code=202,
        response_model=IngestReceipt,
        responses=INGEST_ERRORS,
        summary="A FHIR R4 resource or Bundle",
        openapi_extra=_ingest_openapi(_FHIR_BODY, ("application/fhir+json", "application/json")),
    )
    async def ingest_fhir(principal: Ingester, request: Request) -> JSONResponse:
        return await ingest(SourceKind.FHIR, request)

    # ---- live updates -------------------------------------------------------------------------

    @app.get(
        f"{API}/stream",
        tags=["patients"],
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "events: hello, patients, alerts, resync",
            },
            **READ_ERRORS,
        },
        summary="Server-Sent Events: changed tiles and alerts",
    )
    async def stream(principal: Reader, request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            sub = hub.subscribe()
            try:
                yield b"retry: 2000\n\n" + Message("hello", {"ready": view.ready()}).encode()
                while not hub.closed:
                    message = await sub.next(KEEPALIVE_S)
                    if message is None:
                        yield b": keep-alive\n\n"
                    elif message.event == "bye":
                        return
                    else:
                        yield message.encode()
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Observe)
    return app
