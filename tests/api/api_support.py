"""Tokens, clock and app factory shared by the API and dashboards tests.

Kept out of conftest.py: test modules import these names, and a module named ``conftest`` is
ambiguous when several test directories have one.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from fastapi import FastAPI
from ward_fixtures import T0, Ward

from streams.api import EmbeddedView, StoreIngestor, TokenAuth, create_app
from streams.api.auth import parse_tokens
from streams.ingress import Ingress
from streams.pipeline import Pipeline
from streams.pseudonym import Pseudonymiser

READER = "reader-token-000000000000"
CLINICIAN = "clinician-token-00000000000"
INGEST = "ingest-token-0000000000000"
NOW = T0 + timedelta(minutes=61)
MINUTES = 60


def auth() -> TokenAuth:
    return TokenAuth(
        parse_tokens(
            [
                (READER, "reader", None),
                (CLINICIAN, "clinician", "nurse-ana"),
                (INGEST, "ingest", "gateway"),
            ]
        )
    )


_TICKS = itertools.count()


def clock() -> datetime:
    """The API's clock: ``NOW``, one millisecond later at every reading, as a real clock moves
    on between two requests (alert commands are applied in the order of their times)."""
    return NOW + timedelta(milliseconds=next(_TICKS))


def build_app(ward: Ward, **overrides: object) -> FastAPI:
    ingestor = StoreIngestor(ward.store, Pipeline(Ingress(Pseudonymiser(ward.pseudonyms))), clock)
    kwargs: dict[str, object] = {
        "auth": auth(),
        "alerts": ward.alerts,
        "ingestor": ingestor,
        "clock": clock,
    }
    kwargs.update(overrides)
    return create_app(EmbeddedView(ward.store, ward.alerts), **kwargs)  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
