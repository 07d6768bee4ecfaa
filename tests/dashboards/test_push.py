"""``vitaltwin dashboards push`` through grafana-client, against a recording HTTP server.

Grafana cannot run here; a small HTTP server on loopback answers the Grafana API calls the
command makes (folder lookup/creation, dashboard upsert, datasource upsert) and records each
request, so the test checks the exact payloads grafana-client sends.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards import DATASOURCE_UID, grafana_dashboards
from streams.commands import dashboards as command

TOKEN = "glsa_test_token_0123456789"


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.folders: set[str] = set()
        self.datasources: set[str] = set()


class Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        entry = {
            "method": self.command,
            "path": self.path,
            "body": body,
            "auth": self.headers.get("Authorization"),
        }
        self.server.requests.append(entry)
        return entry

    def do_GET(self) -> None:
        self._record()
        if self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid in self.server.folders:
                return self._answer(200, {"uid": uid, "title": uid})
            return self._answer(404, {"message": "folder not found"})
        if self.path.startswith("/api/datasources/uid/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid in self.server.datasources:
                return self._answer(200, {"uid": uid})
            return self._answer(404, {"message": "data source not found"})
        return self._answer(404, {"message": "not found"})

    def do_POST(self) -> None:
        entry = self._record()
        if self.path == "/api/folders":
            self.server.folders.add(entry["body"]["uid"])
            return self._answer(200, {"uid": entry["body"]["uid"], "title": entry["body"]["title"]})
        if self.path == "/api/dashboards/db":
            uid = entry["body"]["dashboard"]["uid"]
            return self._answer(200, {"status": "success", "uid": uid, "version": 1})
        if self.path == "/api/datasources":
            self.server.datasources.add(entry["body"]["uid"])
            return self._answer(200, {"message": "Datasource added"})
        return self._answer(404, {"message": "not found"})

    def do_PUT(self) -> None:
        self._record()
        return self._answer(200, {"message": "Datasource updated"})


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dashboards", *argv])
    return int(args.func(args))


def url(server: FakeGrafana) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_push_installs_every_dashboard_into_the_folder(grafana: FakeGrafana) -> None:
    assert run_cli("push", "--url", url(grafana), "--token", TOKEN) == 0
    reqs = grafana.requests
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in reqs)
    assert [(r["method"], r["path"]) for r in reqs[:2]] == [
        ("GET", "/api/folders/vitaltwin"),
        ("POST", "/api/folders"),
    ]
    assert reqs[1]["body"] == {"title": "vitaltwin", "uid": "vitaltwin"}
    posted = [r["body"] for r in reqs if r["path"] == "/api/dashboards/db"]
    shipped = grafana_dashboards()
    assert {p["dashboard"]["uid"] for p in posted} == {d["uid"] for d in shipped.values()}
    for body in posted:
        assert body["overwrite"] is True
        assert body["folderUid"] == "vitaltwin"
        original = next(d for d in shipped.values() if d["uid"] == body["dashboard"]["uid"])
        assert body["dashboard"] == original  # sent as shipped

    # A second push finds the folder and overwrites the same dashboards (idempotent).
    grafana.requests.clear()
    assert run_cli("push", "--url", url(grafana), "--token", TOKEN) == 0
    assert not any(r["path"] == "/api/folders" for r in grafana.requests)
    assert len([r for r in grafana.requests if r["path"] == "/api/dashboards/db"]) == 3


def test_push_creates_then_updates_the_datasource(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VITALTWIN_INFLUX_TOKEN", "influx-secret")
    argv = ("push", "--url", url(grafana), "--token", TOKEN, "--influx-url", "http://influx:8086")
    assert run_cli(*argv) == 0
    created = [r for r in grafana.requests if r["path"] == "/api/datasources"]
    assert len(created) == 1
    body = created[0]["body"]
    assert body["uid"] == DATASOURCE_UID
    assert body["type"] == "influxdb"
    assert body["jsonData"] == {
        "version": "Flux",
        "organization": "vitaltwin",
        "defaultBucket": "vitaltwin",
    }
    assert body["secureJsonData"] == {"token": "influx-secret"}
    grafana.requests.clear()
    assert run_cli(*argv) == 0
    assert [r["method"] for r in grafana.requests if "datasources" in r["path"]] == ["GET", "PUT"]


def test_push_needs_a_token_and_reports_refusals(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(command.ENV_TOKEN, raising=False)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dashboards", "push", "--url", url(grafana)])
    args.token = None
    assert args.func(args) == 2
    assert "token is required" in capsys.readouterr().err
    # Nothing listens on this port: a clear error, no traceback.
    assert run_cli("push", "--url", "http://127.0.0.1:9", "--token", TOKEN) == 2
