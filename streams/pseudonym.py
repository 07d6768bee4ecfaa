"""Pseudonymisation at ingress: external identifiers become random surrogate tokens.

A vitals stream with timestamps and device serials is protected health information. At the
edge (``ingest``, ``produce``, the HTTP API) every external identifier - MRN, FHIR Patient id,
device serial - is replaced by a random token (not a hash: a hash of an MRN can be reversed by
hashing every MRN). Everything downstream (Kafka topics and keys, twin state, sinks, webhooks,
logs) sees tokens only. The mapping lives apart, in its own SQLite file, so that access to it can
be controlled separately from the monitoring data.

Tokens look like ``pt-`` / ``dev-`` followed by 20 random base32 characters.
"""

from __future__ import annotations

import base64
import copy
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streams.errors import StoreError
from streams.sqlite_file import SqliteFile

_PREFIX = {"patient": "pt-", "device": "dev-"}  # "-", not "_": tokens must be valid FHIR ids

# FHIR elements that identify a person directly; a thin, pseudonymous copy drops them.
_PATIENT_DIRECT_IDENTIFIERS = (
    "identifier",
    "name",
    "telecom",
    "address",
    "photo",
    "contact",
    "link",
    "text",
)


def new_token(kind: str) -> str:
    raw = base64.b32encode(secrets.token_bytes(13)).decode("ascii").rstrip("=").lower()
    return _PREFIX[kind] + raw[:20]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pseudonyms (
    kind TEXT NOT NULL, identifier TEXT NOT NULL, token TEXT NOT NULL UNIQUE,
    PRIMARY KEY (kind, identifier)
);
"""


class PseudonymStore(SqliteFile):
    """Identifier -> token mapping in SQLite; safe across threads and processes (one file)."""

    def __init__(self, path: str | Path) -> None:
        # FULL: a token minted and handed downstream must never be forgotten on power loss.
        super().__init__(
            path, schema=_SCHEMA, version=1, label="pseudonym store", synchronous="FULL"
        )
        self._cache: dict[tuple[str, str], str] = {}

    def token_for(self, kind: str, identifier: str) -> str:
        """The token for an identifier, minted on first sight (idempotent, race-free)."""
        if kind not in _PREFIX:
            raise StoreError(f"unknown identifier kind {kind!r}")
        if identifier.startswith(_PREFIX[kind]) and self.is_token(kind, identifier):
            return identifier  # already pseudonymous (e.g. re-ingested downstream data)
        key = (kind, identifier)
        token = self._cache.get(key)
        if token is not None:
            return token
        with self._lock:
            # INSERT OR IGNORE then SELECT: two processes minting at once agree on one token.
            self._db.execute(
                "INSERT OR IGNORE INTO pseudonyms (kind, identifier, token) VALUES (?, ?, ?)",
                (kind, identifier, new_token(kind)),
            )
            row = self._db.execute(
                "SELECT token FROM pseudonyms WHERE kind = ? AND identifier = ?", key
            ).fetchone()
        token = str(row[0])
        self._cache[key] = token
        return token

    def is_token(self, kind: str, value: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM pseudonyms WHERE kind = ? AND token = ?", (kind, value)
        ).fetchone()
        return row is not None

    def identifier_for(self, kind: str, token: str) -> str | None:
        """Re-identification, for the clinical systems entitled to it (never used downstream)."""
        row = self._db.execute(
            "SELECT identifier FROM pseudonyms WHERE kind = ? AND token = ?", (kind, token)
        ).fetchone()
        return None if row is None else str(row[0])


class Pseudonymiser:
    """Rewrites wearable samples and FHIR resources so they carry tokens only."""

    def __init__(self, store: PseudonymStore) -> None:
        self.store = store

    def sample(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(payload)
        if isinstance(out.get("patient_id"), str):
            out["patient_id"] = self.store.token_for("patient", out["patient_id"])
        if isinstance(out.get("device_id"), str):
            out["device_id"] = self.store.token_for("device", out["device_id"])
        return out

    def fhir(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = copy.deepcopy(dict(resource))
        self._rewrite(out)
        return out

    def _rewrite(self, res: dict[str, Any]) -> None:
        rtype = res.get("resourceType")
        if rtype == "Bundle":
            for entry in res.get("entry") or []:
                if isinstance(entry, dict):
                    entry.pop("fullUrl", None)  # may embed the server's patient URL
                    if isinstance(entry.get("resource"), dict):
                        self._rewrite(entry["resource"])
            return
        if rtype == "Patient":
            if isinstance(res.get("id"), str):
                res["id"] = self.store.token_for("patient", res["id"])
            for element in _PATIENT_DIRECT_IDENTIFIERS:
                res.pop(element, None)
        elif rtype == "Device" and isinstance(res.get("id"), str):
            res["id"] = self.store.token_for("device", res["id"])
            res.pop("serialNumber", None)
            res.pop("identifier", None)
        for field in ("subject", "patient"):
            self._reference(res.get(field), "Patient", "patient")
        self._reference(res.get("device"), "Device", "device")
        res.pop("identifier", None)  # business identifiers of orders/encounters carry MRNs too

    def _reference(self, ref: object, rtype: str, kind: str) -> None:
        if not isinstance(ref, dict):
            return
        ref.pop("display", None)  # a display is often the patient's name
        ref.pop("identifier", None)
        value = ref.get("reference")
        if isinstance(value, str) and value.startswith(rtype + "/"):
            ref["reference"] = f"{rtype}/{self.store.token_for(kind, value[len(rtype) + 1 :])}"
