"""Grafana dashboards as code: structure, datasource, and every query against the writer's schema.

No Grafana server can run here, so the dashboards are validated structurally, and every Flux
query's measurement, field and tag filters (and the columns it groups by) are checked against
``streams.influx.SCHEMA``: a dashboard cannot query a series the InfluxDB writer never writes.
Flux itself is not executed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import (
    DATASOURCE_UID,
    GRAFANA_DASHBOARDS_DIR,
    GRAFANA_PROVISIONING_DIR,
    grafana_dashboards,
)
from streams.influx import SCHEMA

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"ward-overview", "patient-detail", "pipeline-health"}
BUILTIN_COLUMNS = {"_time", "_value", "_field", "_measurement", "_start", "_stop"}
DASHBOARDS = grafana_dashboards()


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["query"])
        for panel in dash["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


_FILTER = re.compile(r"filter\(fn:\s*\(r\)\s*=>\s*(.*?)\)\s*(?:\n|$)", re.S)
_COMPARE = re.compile(r'r(?:\.(\w+)|\["(\w+)"\])\s*(==|!=|=~|!~)\s*"([^"]*)"')
_GROUPED = re.compile(r"(?:group|keep|pivot)\([^)]*?columns:\s*\[([^\]]*)\]")
_PIVOT_KEYS = re.compile(r"(?:rowKey|columnKey):\s*\[([^\]]*)\]")
_CREATED = re.compile(r"\{r with (\w+):")


def analyse(query: str) -> dict[str, Any]:
    """Measurements, fields, tag filters and used columns of one Flux query."""
    found: dict[str, Any] = {
        "measurements": set(),
        "fields": set(),
        "tags": set(),
        "columns": set(),
    }
    for body in _FILTER.findall(query):
        for attr, key, _, value in _COMPARE.findall(body):
            name = attr or key
            if name == "_measurement":
                found["measurements"].add(value)
            elif name == "_field":
                found["fields"].add(value)
            elif not name.startswith("_"):
                found["tags"].add(name)
    for group in (*_GROUPED.findall(query), *_PIVOT_KEYS.findall(query)):
        found["columns"] |= set(re.findall(r'"(\w+)"', group))
    found["created"] = set(_CREATED.findall(query))
    return found


def test_the_three_dashboards_exist() -> None:
    assert set(DASHBOARDS) == EXPECTED
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_structure(name: str) -> None:
    dash = DASHBOARDS[name]
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in dash, key
    assert "id" not in dash or dash["id"] is None  # ids belong to a Grafana instance
    ids = [p["id"] for p in dash["panels"]]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] > 0
        assert pos["h"] > 0
        assert pos["x"] >= 0
        assert pos["x"] + pos["w"] <= 24
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs)
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert "from(bucket: v.defaultBucket)" in target["query"]
            assert "range(start: v.timeRangeStart" in target["query"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_query_reads_what_the_writer_writes(name: str) -> None:
    dash = DASHBOARDS[name]
    variables = {v["name"] for v in dash["templating"]["list"]}
    for title, query in queries(dash):
        got = analyse(query)
        assert got["measurements"], f"{title}: no r._measurement filter"
        unknown = got["measurements"] - set(SCHEMA)
        assert not unknown, f"{title}: measurements {unknown} are not written"
        tags = set().union(*(SCHEMA[m]["tags"] for m in got["measurements"]))
        fields = set().union(*(SCHEMA[m]["fields"] for m in got["measurements"]))
        assert got["fields"] <= fields, f"{title}: fields {got['fields'] - fields} not written"
        assert got["tags"] <= tags, f"{title}: tags {got['tags'] - tags} not written"
        allowed = tags | fields | BUILTIN_COLUMNS | got["created"]
        assert got["columns"] <= allowed, f"{title}: columns {got['columns'] - allowed}"
        for var in re.findall(r"\$\{(\w+)\}", query):
            assert var in variables, f"{title}: ${{{var}}} is not a dashboard variable"


def test_the_analyser_sees_filters() -> None:
    got = analyse(
        'from(bucket: "b") |> range(start: -1h)\n'
        '  |> filter(fn: (r) => r._measurement == "vitals" and r["signal"] == "spo2"'
        ' and r._field == "value")\n  |> group(columns: ["patient"])\n'
    )
    assert got["measurements"] == {"vitals"}
    assert got["fields"] == {"value"}
    assert got["tags"] == {"signal"}
    assert got["columns"] == {"patient"}


def test_patient_detail_has_a_patient_token_variable() -> None:
    var = next(
        v for v in DASHBOARDS["patient-detail"]["templating"]["list"] if v["name"] == "patient"
    )
    assert var["type"] == "query"
    assert var["datasource"]["uid"] == DATASOURCE_UID
    assert '"patient"' in var["query"]
    assert "scores" in var["query"]


def test_pipeline_health_covers_the_operations_signals() -> None:
    used = {
        (m, f)
        for _, q in queries(DASHBOARDS["pipeline-health"])
        for m in analyse(q)["measurements"]
        for f in analyse(q)["fields"]
    }
    for needed in [
        ("pipeline", "events"),
        ("pipeline", "lag_ms"),
        ("dead_letters", "count"),
        ("webhooks", "count"),
        ("pipeline", "forecast_ms"),
    ]:
        assert needed in used, needed


def test_provisioning_matches_the_dashboards_and_compose() -> None:
    ds = yaml.safe_load((GRAFANA_PROVISIONING_DIR / "datasources" / "influxdb.yaml").read_text())
    [source] = ds["datasources"]
    assert ds["apiVersion"] == 1
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "Flux"
    assert source["jsonData"]["defaultBucket"]
    assert source["jsonData"]["organization"]
    assert "token" in source["secureJsonData"]
    prov = yaml.safe_load((GRAFANA_PROVISIONING_DIR / "dashboards" / "vitaltwin.yaml").read_text())
    [provider] = prov["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./dashboards/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    mount = f"./dashboards/grafana/dashboards:{provider['options']['path']}:ro"
    assert mount in volumes
    assert GRAFANA_DASHBOARDS_DIR == REPO / "dashboards" / "grafana" / "dashboards"
