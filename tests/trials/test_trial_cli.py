"""``vitaltwin trial``: check, run (with report) and re-report, and clear errors."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml
from trialhelpers import BASE, NEWS2_ARM, raw

from streams.commands import trial


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vitaltwin")
    trial.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    data = raw(
        title="A tiny trial",
        days=0.5,
        population={"size": 6, "home_fraction": 0.0, "risk": {"sepsis": 150}},
        arms=[*BASE["arms"], NEWS2_ARM],
        design={"kind": "paired", "control": "none", "shard_size": 3},
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_run_and_report(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(["trial", "check", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "valid (trial tiny" in out
    assert "6 shards, 18 twin runs" in out

    out_dir = tmp_path / "run"
    assert (
        _main(
            [
                "trial",
                "run",
                str(spec_file),
                "--out",
                str(out_dir),
                "--workers",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ran 18 twin runs" in out
    assert "abx vs none: RD critical" in out
    assert re.search(r"news2: n 6, .*alerts/patient-day", out)
    result = json.loads((out_dir / "results.json").read_text())
    assert [c["arm"] for c in result["comparisons"]] == ["abx", "news2"]
    assert result["consort"]["enrolled"] == 6
    assert set(result["arms"]["news2"]) >= {"alerts_per_patient_day", "km_critical", "critical"}
    page = (out_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "A tiny trial" in page
    for heading in ("Per arm", "Versus reference", "alert burden"):
        assert heading in page

    (out_dir / "report.html").unlink()
    assert _main(["trial", "report", str(out_dir)]) == 0
    assert (out_dir / "report.html").exists()
    assert (
        json.loads((out_dir / "results.json").read_text()) == result
    )  # same records, same analysis


def test_errors_exit_2_with_the_reason(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(spec_file.read_text())
    data["arms"][1]["regimen"]["drug"] = "aspirin"
    bad.write_text(yaml.safe_dump(data))
    assert _main(["trial", "run", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitaltwin trial run:")
    assert "arms[1] 'abx'.regimen.drug" in err
    assert _main(["trial", "report", str(tmp_path / "nothing")]) == 2
    assert "holds no trial" in capsys.readouterr().err
