"""Dashboards as code: the built-in ward page and the Grafana provisioning + dashboards.

Plain files (HTML/JS/CSS, JSON, YAML) shipped as package data; this module only says where they
are and loads the Grafana dashboards, so the API and ``vitaltwin dashboards push`` find them in
a clone and in an installed wheel alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
WARD_DIR = ROOT / "ward"
GRAFANA_DIR = ROOT / "grafana"
GRAFANA_DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
GRAFANA_PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
DATASOURCE_UID = "vitaltwin-influx"


def grafana_dashboards() -> dict[str, dict[str, Any]]:
    """Every Grafana dashboard, by file stem, parsed."""
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted(GRAFANA_DASHBOARDS_DIR.glob("*.json"))
    }
