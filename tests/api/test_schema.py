"""The OpenAPI schema: property-based requests over every operation (schemathesis), no 5xx,
and the committed docs/openapi.json kept in sync with the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from api_support import CLINICIAN, INGEST, bearer, build_app
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from ward_fixtures import fill, make_ward

from streams.commands.serve import openapi_document

REPO = Path(__file__).resolve().parents[2]
_TMP = Path(__import__("tempfile").mkdtemp(prefix="vt-schema-"))
_WARD = make_ward(_TMP)
fill(_WARD, 20)
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", build_app(_WARD))
# The event stream never ends by itself: it is tested on a live server in test_routes.py.
schema = schema.exclude(path="/api/v1/stream")
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


_CLIENT = TestClient(build_app(_WARD), raise_server_exceptions=False)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_on_generated_requests(case: schemathesis.Case) -> None:
    token = INGEST if "/ingest/" in case.path else CLINICIAN
    # Sent with Starlette's (httpx2) TestClient, not schemathesis' requests transport: the
    # requests stack here runs on urllib3-future (pulled in by grafana-client's niquests),
    # whose pool manager schemathesis' connection bookkeeping cannot read.
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=bearer(token))
    kwargs.pop("cookies", None)
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        kwargs["content"] = kwargs.pop("data")
    response = _CLIENT.request(**kwargs)
    case.validate_response(response, checks=list(CHECKS))


def test_committed_schema_is_current() -> None:
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json is stale: run `vitaltwin serve --openapi docs/openapi.json`"
    )


def test_every_operation_documents_its_errors() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path == "/healthz":
                continue
            assert "401" in op["responses"], (method, path)
            assert op.get("security"), (method, path)


@pytest.fixture(scope="module", autouse=True)
def _close_ward() -> object:
    yield None
    _WARD.close()
