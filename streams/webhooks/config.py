"""Webhook receivers: from a YAML/JSON file, the environment and command-line flags.

File (``--webhook-config`` or ``VITALTWIN_WEBHOOK_CONFIG``)::

    external_url: https://vitaltwin.example.org      # links in payloads point here
    allow_private_networks: false                    # SSRF guard (see ssrf.py)
    allowed_networks: []                             # CIDRs allowed even when private
    receivers:
      - name: ward-pager
        url: https://pager.example.org/hooks/vitaltwin
        secret_env: PAGER_WEBHOOK_SECRET              # or secrets: [whsec_...] (rotation: 2)
        format: vitaltwin                             # or alertmanager
        min_severity: critical
      - name: ops
        url: https://alerts.example.org/api/v2/webhook
        secret_env: OPS_WEBHOOK_SECRET
        format: alertmanager
        rules: [news2_high, qsofa]

The common single-receiver case needs no file: ``--webhook-url``/``--webhook-secret`` or
``VITALTWIN_WEBHOOK_URL``/``VITALTWIN_WEBHOOK_SECRET`` define (or replace) a receiver named
``default``. Flags win over the environment, which wins over the file. Prefer the environment
for secrets: command-line arguments are visible to every user of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from streams.errors import ConfigError
from streams.webhooks.errors import SecretError, SsrfRefused
from streams.webhooks.signing import Secret
from streams.webhooks.ssrf import NetworkPolicy, literal_refusal, parse_url
from twin.alerting import Notification, Severity
from twin.alerting.policy import SEVERITY_RANK

# Standard Webhooks' suggested schedule: the delay before each attempt, the first immediate.
STANDARD_SCHEDULE_S: tuple[float, ...] = (
    0,
    5,
    300,
    1800,
    7200,
    18000,
    36000,
    50400,
    72000,
    86400,
)

ENV_URL = "VITALTWIN_WEBHOOK_URL"
ENV_SECRET = "VITALTWIN_WEBHOOK_SECRET"
ENV_CONFIG = "VITALTWIN_WEBHOOK_CONFIG"
ENV_FORMAT = "VITALTWIN_WEBHOOK_FORMAT"
DEFAULT_RECEIVER = "default"


class ReceiverConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: str = Field(max_length=2048)
    secrets: tuple[SecretStr, ...] = ()  # signing secrets; several during key rotation
    secret_env: str | None = None  # environment variable holding them (space-separated)
    format: Literal["vitaltwin", "alertmanager"] = "vitaltwin"
    detail: Literal["thin", "full"] = "thin"  # full adds ward and raw values
    min_severity: Severity = Severity.INFO
    rules: tuple[str, ...] | None = None  # only these rules; None: every rule
    send_resolved: bool = True
    timeout_s: float = Field(default=15.0, ge=1.0, le=30.0)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parse_url(value)
        except SsrfRefused as exc:
            raise ValueError(str(exc)) from None
        return value

    def signing_secrets(self) -> tuple[Secret, ...]:
        return tuple(Secret.parse(s.get_secret_value()) for s in self.secrets)

    def accepts(self, note: Notification) -> bool:
        """Routing: does this receiver want this notification?"""
        if not self.enabled:
            return False
        if note.status == "resolved" and not self.send_resolved:
            return False
        if SEVERITY_RANK[note.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        return self.rules is None or note.rule in self.rules


class WebhookConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    receivers: tuple[ReceiverConfig, ...] = ()
    external_url: str | None = None
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()
    retry_schedule_s: tuple[float, ...] = STANDARD_SCHEDULE_S
    jitter: float = Field(default=0.2, ge=0.0, le=0.5)  # +-fraction of each retry delay
    # Compresses the retry schedule (not Retry-After) for tests and demos; 1.0 in production.
    retry_time_scale: float = Field(default=1.0, gt=0.0, le=1.0)
    max_retry_after_s: float = Field(default=3600.0, ge=0.0)
    poll_interval_s: float = Field(default=1.0, gt=0.0, le=60.0)
    user_agent: str = "vitaltwin-webhooks/0.1"

    def network_policy(self) -> NetworkPolicy:
        return NetworkPolicy.from_config(self.allow_private_networks, self.allowed_networks)

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read webhook config {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]  # optional: only YAML configs need it
        except ImportError:
            raise ConfigError("YAML webhook configs need PyYAML; or use a .json file") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"webhook config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"webhook config {path} must be a mapping")
    return data


def load_webhook_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    url: str | None = None,
    secret: str | None = None,
    fmt: str | None = None,
    allow_private: bool | None = None,
) -> WebhookConfig:
    """Build the webhook config: file, then environment, then explicit arguments (flags)."""
    env = os.environ if env is None else env
    path = path or env.get(ENV_CONFIG) or None
    data: dict[str, Any] = _read_file(Path(path)) if path else {}
    url = url or env.get(ENV_URL) or None
    secret = secret or env.get(ENV_SECRET) or None
    receivers = [dict(r) for r in data.get("receivers", []) if isinstance(r, dict)]
    if len(receivers) != len(data.get("receivers", [])):
        raise ConfigError("every receiver in the webhook config must be a mapping")
    if url:
        if not secret:
            raise ConfigError(
                f"a webhook URL needs a signing secret (--webhook-secret or {ENV_SECRET});"
                " make one with: python -c 'from streams.webhooks import generate_secret;"
                " print(generate_secret())'"
            )
        receivers = [r for r in receivers if r.get("name") != DEFAULT_RECEIVER]
        receivers.insert(
            0,
            {
                "name": DEFAULT_RECEIVER,
                "url": url,
                "secrets": secret.split(),
                "format": fmt or env.get(ENV_FORMAT) or "vitaltwin",
            },
        )
    for r in receivers:
        var = r.get("secret_env")
        if var and not r.get("secrets"):
            value = env.get(var)
            if not value:
                raise ConfigError(f"receiver {r.get('name')!r}: environment {var} is not set")
            r["secrets"] = value.split()
    data["receivers"] = receivers
    if allow_private is not None:
        data["allow_private_networks"] = allow_private
    try:
        config = WebhookConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid webhook config: {exc}") from None
    _check(config)
    return config


def _check(config: WebhookConfig) -> None:
    names = [r.name for r in config.receivers]
    if len(set(names)) != len(names):
        raise ConfigError(f"receiver names must be unique: {names}")
    if not config.retry_schedule_s:
        raise ConfigError("retry_schedule_s needs at least one entry")
    try:
        policy = config.network_policy()
    except ValueError as exc:
        raise ConfigError(f"allowed_networks: {exc}") from None
    for r in config.receivers:
        if not r.secrets:
            raise ConfigError(f"receiver {r.name!r} has no signing secret (secrets or secret_env)")
        try:
            r.signing_secrets()
        except SecretError as exc:
            raise ConfigError(f"receiver {r.name!r}: {exc}") from None
        reason = literal_refusal(r.url, policy)
        if reason is not None:
            raise ConfigError(
                f"receiver {r.name!r} points at a {reason}; set allow_private_networks or"
                " list the network in allowed_networks to allow it"
            )


def add_webhook_arguments(parser: argparse.ArgumentParser) -> None:
    """The webhook flags shared by ``vitaltwin demo`` and ``vitaltwin worker``."""
    group = parser.add_argument_group("alert webhooks")
    group.add_argument("--webhook-url", help=f"single receiver URL (env {ENV_URL})")
    group.add_argument(
        "--webhook-secret",
        help=f"its whsec_ signing secret (env {ENV_SECRET}; the env var is safer)",
    )
    group.add_argument(
        "--webhook-config", type=Path, help=f"receivers file, YAML or JSON (env {ENV_CONFIG})"
    )
    group.add_argument(
        "--webhook-format", choices=("vitaltwin", "alertmanager"), help="payload of --webhook-url"
    )
    group.add_argument(
        "--webhook-allow-private",
        action="store_true",
        default=None,
        help="allow private and loopback receiver addresses (SSRF guard off; local testing)",
    )


def webhook_config_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> WebhookConfig:
    return load_webhook_config(
        args.webhook_config,
        env=env,
        url=args.webhook_url,
        secret=args.webhook_secret,
        fmt=args.webhook_format,
        allow_private=args.webhook_allow_private,
    )
