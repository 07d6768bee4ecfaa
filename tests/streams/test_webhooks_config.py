"""Webhook configuration (file, environment, flags) and payload shapes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from test_webhooks_support import SECRET, SECRET_2, note

from streams.errors import ConfigError
from streams.webhooks import (
    add_webhook_arguments,
    load_webhook_config,
    route,
    webhook_config_from_args,
)
from streams.webhooks.payloads import alertmanager_body, vitaltwin_body

URL = "https://hooks.example.org/vitaltwin"


def test_single_receiver_from_environment() -> None:
    cfg = load_webhook_config(
        env={"VITALTWIN_WEBHOOK_URL": URL, "VITALTWIN_WEBHOOK_SECRET": SECRET}
    )
    (r,) = cfg.receivers
    assert (r.name, r.url, r.format) == ("default", URL, "vitaltwin")
    assert len(r.signing_secrets()) == 1
    assert SECRET not in repr(cfg)  # secrets never reach logs through a repr


def test_flags_beat_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "hooks.json"
    path.write_text(
        json.dumps(
            {
                "external_url": "https://vt.example.org",
                "receivers": [
                    {"name": "default", "url": "https://old.example.org/", "secrets": [SECRET]},
                    {
                        "name": "ops",
                        "url": "https://ops.example.org/am",
                        "secret_env": "OPS_SECRET",
                        "format": "alertmanager",
                        "rules": ["news2_high"],
                    },
                ],
            }
        )
    )
    parser = argparse.ArgumentParser()
    add_webhook_arguments(parser)
    args = parser.parse_args(
        [
            "--webhook-config",
            str(path),
            "--webhook-url",
            URL,
            "--webhook-secret",
            f"{SECRET} {SECRET_2}",
        ]
    )
    env = {"VITALTWIN_WEBHOOK_URL": "https://env.example.org/", "OPS_SECRET": SECRET_2}
    cfg = webhook_config_from_args(args, env)
    assert [r.name for r in cfg.receivers] == ["default", "ops"]
    assert cfg.receivers[0].url == URL
    assert len(cfg.receivers[0].signing_secrets()) == 2  # rotation from the flag
    assert cfg.receivers[1].format == "alertmanager"
    assert cfg.external_url == "https://vt.example.org"


def test_yaml_files_load(tmp_path: Path) -> None:
    path = tmp_path / "hooks.yaml"
    path.write_text(f"receivers:\n  - name: a\n    url: {URL}\n    secrets: ['{SECRET}']\n")
    assert load_webhook_config(path, env={}).receivers[0].name == "a"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"VITALTWIN_WEBHOOK_URL": URL}, "signing secret"),
        ({"VITALTWIN_WEBHOOK_URL": URL, "VITALTWIN_WEBHOOK_SECRET": "nope"}, "whsec_"),
        (
            {"VITALTWIN_WEBHOOK_URL": "ftp://x.example.org/", "VITALTWIN_WEBHOOK_SECRET": SECRET},
            "http",
        ),
        (
            {
                "VITALTWIN_WEBHOOK_URL": "http://169.254.169.254/",
                "VITALTWIN_WEBHOOK_SECRET": SECRET,
            },
            "link-local",
        ),
        ({"VITALTWIN_WEBHOOK_CONFIG": "/nonexistent/hooks.json"}, "cannot read"),
    ],
)
def test_bad_configs_fail_at_startup_with_a_reason(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_webhook_config(env=env)


def test_no_configuration_means_no_receivers() -> None:
    assert load_webhook_config(env={}).receivers == ()


def test_alertmanager_v4_shape() -> None:
    notes = [note("p1", "news2_high"), note("p1", "qsofa", severity="warning", status="resolved")]
    body = alertmanager_body(notes, receiver="ops", external_url="https://vt.example.org")
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupKey"] == '{}:{patient="p1"}'
    assert body["commonLabels"] == {"patient": "p1", "rule_kind": "news2_band"}
    firing, resolved = body["alerts"]
    assert set(firing) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["endsAt"].endswith("Z")
    assert firing["labels"]["alertname"] == "news2_high"
    assert firing["generatorURL"].startswith("https://vt.example.org/alerts/al_")
    assert len(firing["fingerprint"]) == 16
    assert all(isinstance(v, str) for a in body["alerts"] for v in a["annotations"].values())


def test_thin_payloads_carry_no_ward_or_raw_values() -> None:
    thin = vitaltwin_body([note()])
    alert = thin["data"]["alerts"][0]
    assert "ward" not in json.dumps(thin)
    assert "values" not in alert
    assert alert["scores"]["news2_total"] == 8
    assert alert["explanation"]["summary"]
    full = vitaltwin_body([note()], detail="full")["data"]["alerts"][0]
    assert full["ward"] == "ward-7"
    assert full["values"] == {"respiratory_rate": 27.0}


def test_messages_are_byte_identical_when_rebuilt() -> None:
    cfg = load_webhook_config(
        env={"VITALTWIN_WEBHOOK_URL": URL, "VITALTWIN_WEBHOOK_SECRET": SECRET}
    )
    assert route(cfg, [note(), note("p2")]) == route(cfg, [note(), note("p2")])
