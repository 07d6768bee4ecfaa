"""``vitaltwin train`` and ``vitaltwin evaluate`` on a dataset directory in the schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from models import registry, synthetic
from streams.commands import evaluate, train


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    train.register(sub)
    evaluate.register(sub)
    return p


def test_train_then_evaluate_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic.cohort(patients=12, days=1.2, seed=4).save(tmp_path / "data")
    out = tmp_path / "model"
    args = _parser().parse_args(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--heads",
            "1",
            "--stride",
            "4",
            "--no-progress",
            "--no-onnx",
        ]
    )
    assert args.func(args) == 0
    captured = capsys.readouterr().out
    summary = json.loads(captured[captured.index("{") :])
    assert summary["checkpoint"] == str(out)
    meta = registry.read(out).metadata
    assert meta["data"]["source"] == {"dataset": str(data)}
    args = _parser().parse_args(
        ["evaluate", "--model", str(out), "--data", str(data), "--out", str(tmp_path / "ev")]
    )
    assert args.func(args) == 0
    assert (tmp_path / "ev" / "report.html").exists()
    bad = _parser().parse_args(["train", "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert bad.func(bad) == 2


def test_every_place_that_names_backends_offers_the_same_ones() -> None:
    """The CLI and trial specs list the backends without importing the fast path (it is heavy
    to import at parse time); a backend added to one must reach the others."""
    import typing

    from models.fastpath import BACKENDS
    from simulators.trials.spec import ForecasterSpec

    offered = {"auto", *BACKENDS, "onnx"}
    sub = argparse.ArgumentParser().add_subparsers()
    evaluate.register(sub)
    cli = next(a for a in sub.choices["evaluate"]._actions if "--backend" in a.option_strings)
    assert set(cli.choices) == offered
    assert set(typing.get_args(ForecasterSpec.model_fields["backend"].annotation)) == offered
