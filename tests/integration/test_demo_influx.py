"""`vitaltwin demo --influx-url ...` writes the ward into an InfluxDB-v2-API server (QuestDB)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from test_influx_sink import poll, questdb_tables, rows

from streams.cli import build_parser
from streams.commands import demo
from streams.pseudonym import PseudonymStore
from streams.sqlite_store import SqliteStore

pytestmark = pytest.mark.integration
__all__ = ["questdb_tables"]  # the fixture, imported so this module can use it


def test_demo_writes_vitals_and_scores_for_every_twin(
    questdb_tables: str, questdb_url: str, tmp_path: Path
) -> None:
    """Runs after the tables exist with InfluxDB-like overwrite semantics (test_influx_sink)."""
    args = build_parser().parse_args(
        [
            "demo",
            "--patients",
            "5",
            "--days",
            "0.1",
            "--seed",
            "11",
            "--speed",
            "0",
            "--dir",
            str(tmp_path),
            "--quiet",
            "--influx-url",
            questdb_url,
            "--influx-token",
            "test-token",
        ]
    )
    assert demo.run(args, out=io.StringIO()) == 0
    tokens = sorted(SqliteStore(tmp_path / "vitaltwin.db").load_states())
    quoted = ", ".join(f"'{t}'" for t in tokens)
    sql = f"SELECT patient, count() n FROM vitals WHERE patient IN ({quoted}) GROUP BY patient"
    got = poll(lambda: rows(questdb_url, sql), lambda r: len(r) == len(tokens), "demo vitals")
    assert all(r["n"] > 50 for r in got)
    # pseudonymised: the simulator's ids never reach the sink
    pseudonyms = PseudonymStore(tmp_path / "pseudonyms.db")
    raw_ids = [pseudonyms.identifier_for("patient", t) for t in tokens]
    assert not rows(
        questdb_url,
        "SELECT count() n FROM vitals WHERE patient IN ("
        + ", ".join(f"'{r}'" for r in raw_ids)
        + ")",
    )[0]["n"]
