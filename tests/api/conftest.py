"""Fixtures: a ward filled by the real embedded runtime and alert stage, and the API over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import MINUTES, build_app
from fastapi.testclient import TestClient
from ward_fixtures import Ward, fill, make_ward


@pytest.fixture
def ward(tmp_path: Path) -> Iterator[Ward]:
    w = make_ward(tmp_path)
    fill(w, MINUTES)
    yield w
    w.close()


@pytest.fixture
def client(ward: Ward) -> Iterator[TestClient]:
    with TestClient(build_app(ward)) as c:
        yield c
