"""`vitaltwin demo`: the one-command embedded pipeline a new user runs first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from simulators import SimulationConfig, stream
from streams.cli import build_parser
from streams.commands import demo
from streams.pseudonym import PseudonymStore
from streams.sqlite_store import SqliteStore


def run_demo(tmp: Path, *extra: str) -> str:
    args = build_parser().parse_args(
        [
            "demo",
            "--patients",
            "12",
            "--days",
            "0.25",
            "--seed",
            "3",
            "--speed",
            "0",
            "--dir",
            str(tmp),
            "--quiet",
            "--port",
            "0",
            *extra,
        ]
    )
    out = io.StringIO()
    assert demo.run(args, out=out) == 0
    return out.getvalue()


def test_demo_runs_the_whole_pipeline_and_accounts_for_every_record(tmp_path: Path) -> None:
    text = run_demo(tmp_path)
    expected = sum(1 for _ in stream(SimulationConfig(patients=12, days=0.25, seed=3)))
    store = SqliteStore(tmp_path / "vitaltwin.db")
    acc = store.accounting()
    assert acc.processed + acc.dead_lettered == acc.received
    assert acc.dead_lettered == 0  # the simulator's output is valid input
    assert len(store.load_states()) == 12
    assert store.count("vitals") > 1000
    assert "NEWS2 routine" in text
    assert f"received {acc.received}" in text
    # every simulated record became at least one item (batches of samples count per sample)
    assert acc.received >= expected * 0.99


def test_demo_resumes_after_a_stop_without_reapplying(tmp_path: Path) -> None:
    full_dir = tmp_path / "full"
    run_demo(full_dir)
    full = SqliteStore(full_dir / "vitaltwin.db")

    part_dir = tmp_path / "part"
    # stopped part-way, as Ctrl-C would; a record count, not a wall-clock, so a fast machine
    # cannot finish the whole stream before the stop
    run_demo(part_dir, "--max-records", "1500")
    stopped = SqliteStore(part_dir / "vitaltwin.db").accounting().received
    assert 0 < stopped < full.accounting().received
    run_demo(part_dir)  # resumes from the committed position
    resumed = SqliteStore(part_dir / "vitaltwin.db")
    assert resumed.accounting().received == full.accounting().received
    assert by_simulated_patient(full_dir) == by_simulated_patient(part_dir)


def test_demo_duration_stops_a_paced_run_early(tmp_path: Path) -> None:
    # 0.25 simulated days at 600x would take 36 s; --duration ends it after 0.5 s, cleanly
    text = run_demo(tmp_path, "--speed", "600", "--duration", "0.5")
    expected = sum(1 for _ in stream(SimulationConfig(patients=12, days=0.25, seed=3)))
    acc = SqliteStore(tmp_path / "vitaltwin.db").accounting()
    assert 0 < acc.received < expected
    assert acc.processed + acc.dead_lettered == acc.received
    assert f"received {acc.received}" in text


@pytest.mark.parametrize(
    "flag", ["--max-records", "--forecast-workers"], ids=["max-records", "workers"]
)
def test_demo_refuses_counts_below_one(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    # --max-records 0 would still process one record; 0 workers would fail after set-up
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", flag, "0"])
    assert f"argument {flag}: must be at least 1, got 0" in capsys.readouterr().err


def by_simulated_patient(directory: Path) -> dict[str, dict[str, object]]:
    """Each twin's clinical content keyed by the simulator's id (tokens are random per store)."""
    pseudonyms = PseudonymStore(directory / "pseudonyms.db")
    out = {}
    for token, state in SqliteStore(directory / "vitaltwin.db").load_states().items():
        data = state.to_dict()
        content = {k: data[k] for k in ("watermark_ms", "ring", "news2_total", "qsofa_total")}
        content["latest"] = {k: v[2] for k, v in data["latest"].items()}
        out[str(pseudonyms.identifier_for("patient", token))] = content
    return out


def test_demo_refuses_to_mix_settings_in_one_directory(tmp_path: Path) -> None:
    run_demo(tmp_path)
    args = build_parser().parse_args(
        ["demo", "--patients", "13", "--days", "0.25", "--dir", str(tmp_path), "--quiet"]
    )
    with pytest.raises(SystemExit, match="--reset"):
        demo.run(args, out=io.StringIO())


def test_demo_feeds_the_prometheus_metrics(tmp_path: Path) -> None:
    from streams.metrics import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("vitaltwin_events_total", topic="simulator")
    batches = value("vitaltwin_batch_seconds_count", topic="simulator")
    run_demo(tmp_path)
    applied = SqliteStore(tmp_path / "vitaltwin.db").accounting().processed
    assert value("vitaltwin_events_total", topic="simulator") - before >= applied * 0.99
    assert value("vitaltwin_batch_seconds_count", topic="simulator") > batches
    assert value("vitaltwin_event_to_effect_seconds_count") > 0


def test_demo_forecasts_with_the_shipped_checkpoint(tmp_path: Path) -> None:
    run_demo(tmp_path)
    forecasts = SqliteStore(tmp_path / "vitaltwin.db").effects(kind="forecast")
    assert forecasts
    first = forecasts[0]
    assert first["model"].startswith("tft:")
    assert set(first["quantiles"]) >= {"heart_rate", "respiratory_rate"}
    assert all(0.0 <= p <= 1.0 for p in first["risk"].values())
