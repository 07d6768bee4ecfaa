"""Bearer-token authentication with roles, configured from the environment or a file.

Tokens: ``VITALTWIN_API_TOKENS="TOKEN:ROLE[:NAME],..."`` or ``VITALTWIN_API_TOKENS_FILE`` (one
``TOKEN ROLE [NAME]`` per line, ``#`` comments; for Docker/Kubernetes secrets). ``NAME`` is who
the audit log says acted (default ``ROLE-N``): a clinician's acknowledgement is attributed to the
token that made it, never to a name in the request body.

Roles and what they may do:

| role | read (GET) | alert commands | ingest |
|---|---|---|---|
| reader | yes | no | no |
| clinician | yes | yes | no |
| ingest | no | no | yes |

Ingestion has a role of its own: device gateways and EHR interfaces hold it, and a credential
that can write observations should not also read every patient's record (or acknowledge alerts).

Tokens are compared in constant time (``hmac.compare_digest`` over every configured token, so
the time taken does not reveal which prefix matched) and never logged.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from streams.api.errors import ApiError
from streams.errors import ConfigError

ENV_TOKENS = "VITALTWIN_API_TOKENS"
ENV_TOKENS_FILE = "VITALTWIN_API_TOKENS_FILE"
MIN_TOKEN_LENGTH = 16


class Role(StrEnum):
    READER = "reader"
    CLINICIAN = "clinician"
    INGEST = "ingest"


class Permission(StrEnum):
    READ = "read"
    ACT = "act"  # acknowledge, silence, annotate
    INGEST = "ingest"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({Permission.READ}),
    Role.CLINICIAN: frozenset({Permission.READ, Permission.ACT}),
    Role.INGEST: frozenset({Permission.INGEST}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


class TokenAuth:
    """Token -> principal, checked in constant time."""

    def __init__(self, tokens: Mapping[str, Principal], *, min_length: int = MIN_TOKEN_LENGTH):
        short = [p.name for t, p in tokens.items() if len(t) < min_length]
        if short:
            raise ConfigError(
                f"API tokens must be at least {min_length} characters (principals {short})"
            )
        self._tokens = [(t.encode(), p) for t, p in tokens.items()]

    def __len__(self) -> int:
        return len(self._tokens)

    def identify(self, token: str) -> Principal | None:
        given = token.encode()
        found: Principal | None = None
        for known, principal in self._tokens:
            # No early exit: every configured token is compared whatever matched.
            if hmac.compare_digest(given, known):
                found = principal
        return found

    def check(self, authorization: str | None, permission: Permission) -> Principal:
        """The principal for an ``Authorization`` header value, or 401/403 as ``ApiError``."""
        challenge = {"WWW-Authenticate": 'Bearer realm="vitaltwin"'}
        if not authorization:
            raise ApiError(401, "unauthorized", "missing bearer token", headers=challenge)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, "unauthorized", "expected 'Authorization: Bearer <token>'", headers=challenge
            )
        principal = self.identify(token.strip())
        if principal is None:
            raise ApiError(401, "unauthorized", "unknown token", headers=challenge)
        if not principal.may(permission):
            raise ApiError(
                403, "forbidden", f"role {principal.role.value} may not {permission.value}"
            )
        return principal


def parse_tokens(entries: Iterable[tuple[str, str, str | None]]) -> dict[str, Principal]:
    tokens: dict[str, Principal] = {}
    counts: dict[Role, int] = {}
    for token, role_name, name in entries:
        try:
            role = Role(role_name.strip().lower())
        except ValueError:
            raise ConfigError(
                f"unknown API role {role_name!r} (one of {[r.value for r in Role]})"
            ) from None
        counts[role] = counts.get(role, 0) + 1
        if token in tokens:
            raise ConfigError("the same API token is configured twice")
        tokens[token] = Principal(name or f"{role.value}-{counts[role]}", role)
    return tokens


def tokens_from_env(env: Mapping[str, str] | None = None) -> dict[str, Principal]:
    """Tokens from ``VITALTWIN_API_TOKENS`` and/or ``VITALTWIN_API_TOKENS_FILE``."""
    e = os.environ if env is None else env
    entries: list[tuple[str, str, str | None]] = []
    for item in filter(None, (s.strip() for s in e.get(ENV_TOKENS, "").split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{ENV_TOKENS}: expected TOKEN:ROLE[:NAME] items")
        entries.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    path = e.get(ENV_TOKENS_FILE)
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{ENV_TOKENS_FILE}: cannot read {path}: {exc.strerror}") from None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) not in (2, 3):
                raise ConfigError(f"{path}:{number}: expected 'TOKEN ROLE [NAME]'")
            entries.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    return parse_tokens(entries)
