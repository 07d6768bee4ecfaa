"""Parquet dataset, plot and the ``vitaltwin simulate`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.compute as pc
import pytest

from simulators import (
    DatasetWriter,
    SimulationConfig,
    plot_patient,
    read_manifest,
    read_table,
    simulate,
)
from simulators.dataset import SCHEMAS, TABLES
from streams.commands import simulate as command

CFG = SimulationConfig(patients=12, days=1, seed=53, risk={"sepsis": 80.0})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ds")
    with DatasetWriter(path, CFG, fhir=True) as writer:
        for chunk in simulate(CFG):
            writer.write(chunk)
    return path


def test_tables_have_the_documented_schema(dataset: Path) -> None:
    manifest = read_manifest(dataset)
    assert manifest["config"]["seed"] == 53
    for name in TABLES:
        table = read_table(dataset, name)
        assert table.schema.equals(SCHEMAS[name], check_metadata=False), name
        assert table.num_rows == manifest["rows"][name]
    samples = read_table(dataset, "samples")
    assert pc.all(
        pc.greater_equal(samples.column("received_at"), samples.column("observed_at"))
    ).as_py()
    labels = read_table(dataset, "labels")
    assert labels.num_rows > 0
    assert set(labels.column("outcome").to_pylist()) <= {"recovered", "ongoing", "critical", "died"}
    one = read_table(dataset, "samples", patient_id=CFG.patient_id(3))
    assert set(one.column("patient_id").to_pylist()) == {CFG.patient_id(3)}


def test_plot_writes_a_png(dataset: Path, tmp_path: Path) -> None:
    sick = read_table(dataset, "labels").column("patient_id")[0].as_py()
    out = plot_patient(dataset, sick, tmp_path / "p.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


def test_cli_writes_dataset_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "simulate",
            "--patients",
            "6",
            "--days",
            "0.5",
            "--seed",
            "1",
            "--out",
            str(out),
            "--plot",
            "2",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "rows: samples" in printed
    assert "plot:" in printed
    assert (out / "plots" / "sim1-000002.png").exists()
    assert read_table(out, "patients").num_rows == 6


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--patients", "0", "--out", str(tmp_path / "x")])
    assert args.func(args) == 2
    assert "patients must be" in capsys.readouterr().err
