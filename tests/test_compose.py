"""docker-compose.yml is for users (no Docker engine runs here): keep it correct by checking it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streams.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_every_image_is_pinned() -> None:
    for name, svc in SERVICES.items():
        image = svc.get("image")
        if image is None:
            assert "build" in svc, name
            continue
        tag = image.rpartition(":")[2]
        assert ":" in image, f"{name}: {image} has no tag"
        assert tag not in ("latest", ""), f"{name}: {image} is not pinned"


def test_influxdb_is_2_7_not_latest() -> None:
    assert SERVICES["influxdb"]["image"] == "influxdb:2.7"  # latest is InfluxDB 3: no Flux


def test_services_waited_on_as_healthy_have_healthchecks() -> None:
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck"


def test_vitaltwin_commands_parse() -> None:
    parser = build_parser()
    for name, svc in SERVICES.items():
        image = svc.get("image", "")
        if "build" in svc or image.startswith("vitaltwin"):
            args = parser.parse_args(svc["command"])
            assert callable(args.func), name


def test_mounted_paths_exist_in_the_repo() -> None:
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"


def test_grafana_provisioning_is_mounted_where_grafana_reads_it() -> None:
    volumes = SERVICES["grafana"]["volumes"]
    assert any(v.endswith(":/etc/grafana/provisioning:ro") for v in volumes)
    provider = yaml.safe_load(
        (ROOT / "dashboards/grafana/provisioning/dashboards/vitaltwin.yaml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert any(v.split(":")[1] == path for v in volumes)
