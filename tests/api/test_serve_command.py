"""``vitaltwin serve``: refuses to run open, writes the schema, and serves a store end to end."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_support import READER
from ward_fixtures import fill, make_ward

from streams.commands import serve

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


def test_refuses_to_start_without_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VITALTWIN_API_TOKENS", raising=False)
    monkeypatch.delenv("VITALTWIN_API_TOKENS_FILE", raising=False)
    assert serve.run(parse()) == 2
    assert "no API tokens" in capsys.readouterr().err
    monkeypatch.setenv("VITALTWIN_API_TOKENS", "short:reader")
    assert serve.run(parse()) == 2


def test_writes_the_openapi_schema(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    assert serve.run(parse("--openapi", str(out))) == 0
    assert json.loads(out.read_text()) == json.loads((REPO / "docs" / "openapi.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serves_an_embedded_store(tmp_path: Path) -> None:
    ward = make_ward(tmp_path)
    fill(ward, 10)
    ward.close()
    port = free_port()
    args = [
        "--db",
        str(tmp_path / "vitaltwin.db"),
        "--alerts-db",
        str(tmp_path / "alerts.db"),
        "--pseudonyms",
        str(tmp_path / "pseudonyms.db"),
        "--port",
        str(port),
    ]
    script = (
        "import argparse, sys\n"
        "from streams.commands import serve\n"
        "p = argparse.ArgumentParser(); serve.register(p.add_subparsers(dest='c'))\n"
        f"sys.exit(serve.run(p.parse_args(['serve', *{args!r}])))\n"
    )
    env = {**os.environ, "VITALTWIN_API_TOKENS": f"{READER}:reader"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        page = httpx.get(url + "/api/v1/patients", headers={"Authorization": f"Bearer {READER}"})
        assert page.status_code == 200
        assert page.json()["total"] == 6
        assert httpx.get(url + "/api/v1/patients").status_code == 401
        assert "vitaltwin" in httpx.get(url + "/").text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert READER.encode() not in err  # nothing logged the token
