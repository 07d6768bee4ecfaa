"""Every route refuses a missing or wrong token, and a role that lacks the permission."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from api_support import CLINICIAN, INGEST, READER, bearer
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from streams.api.app import PUBLIC_PATHS
from streams.api.auth import TokenAuth, parse_tokens, tokens_from_env
from streams.errors import ConfigError

# The least-privileged role each route needs, and a role that must be refused.
NEEDS = {"GET": ("read", INGEST), "POST:ingest": ("ingest", CLINICIAN), "POST": ("act", READER)}


def protected(client: TestClient) -> list[tuple[str, str]]:
    routes = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path not in PUBLIC_PATHS:
            path = re.sub(r"\{[^}]+\}", "x-1", route.path)
            routes += [(method, path) for method in sorted(route.methods)]
    return routes


def test_the_route_list_is_complete(client: TestClient) -> None:
    paths = {p for _, p in protected(client)}
    assert {
        "/api/v1/patients",
        "/api/v1/alerts",
        "/api/v1/ingest/wearable",
        "/api/v1/ingest/fhir",
        "/api/v1/stream",
        "/metrics",
    } <= paths
    assert len(protected(client)) == 13  # a new route must be added to these tests knowingly


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-0000000000", "Basic cmVhZGVyOnB3", "Bearer", READER[:-1]],
    ids=["missing", "wrong", "basic", "empty", "no-scheme"],
)
def test_every_route_refuses_missing_or_wrong_tokens(
    client: TestClient, header: str | None
) -> None:
    for method, path in protected(client):
        headers = {} if header is None else {"Authorization": header}
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert (header or "") not in r.text or not header


def test_every_route_refuses_a_role_without_the_permission(client: TestClient) -> None:
    for method, path in protected(client):
        key = "POST:ingest" if "/ingest/" in path else method
        _, wrong = NEEDS[key]
        r = client.request(method, path, headers=bearer(wrong), json={})
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "forbidden"


def test_public_routes_carry_no_patient_data(client: TestClient) -> None:
    for path in (
        "/",
        "/patients/pt-anything",
        "/healthz",
        "/api/v1/openapi.json",
        "/static/ward.js",
    ):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "pt-" not in r.text.replace("pt-anything", "") or path.endswith(".js")
    assert client.get("/healthz").json() == {"status": "ok"}


def test_tokens_from_env_and_file(tmp_path: Path) -> None:
    secrets = tmp_path / "tokens"
    secrets.write_text("# gateway\nfile-token-00000000000000 ingest edge-gw\n\n")
    tokens = tokens_from_env(
        {
            "VITALTWIN_API_TOKENS": "aaaaaaaaaaaaaaaa1:reader, bbbbbbbbbbbbbbbb2:clinician:dr-who",
            "VITALTWIN_API_TOKENS_FILE": str(secrets),
        }
    )
    assert {t: (p.name, p.role.value) for t, p in tokens.items()} == {
        "aaaaaaaaaaaaaaaa1": ("reader-1", "reader"),
        "bbbbbbbbbbbbbbbb2": ("dr-who", "clinician"),
        "file-token-00000000000000": ("edge-gw", "ingest"),
    }
    auth = TokenAuth(tokens)
    assert auth.identify("bbbbbbbbbbbbbbbb2").name == "dr-who"  # type: ignore[union-attr]
    assert auth.identify("bbbbbbbbbbbbbbbb") is None


@pytest.mark.parametrize(
    "value",
    ["short:reader", "aaaaaaaaaaaaaaaa1:admin", "aaaaaaaaaaaaaaaa1", "x:y:z:w"],
)
def test_bad_token_configuration_is_refused(value: str) -> None:
    with pytest.raises(ConfigError):
        TokenAuth(tokens_from_env({"VITALTWIN_API_TOKENS": value}))


def test_the_same_token_twice_is_refused() -> None:
    with pytest.raises(ConfigError):
        parse_tokens([("aaaaaaaaaaaaaaaa1", "reader", None), ("aaaaaaaaaaaaaaaa1", "ingest", None)])
