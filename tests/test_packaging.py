"""The installed package (what the Docker image runs) carries the files the runtime loads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_checkpoint_dashboards_and_type_marker(tmp_path: Path) -> None:
    # From a copy: an in-tree build reuses build/lib, which may hold files the current
    # configuration would no longer package.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("twin", "models", "simulators", "streams", "dashboards"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("vitaltwin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # `vitaltwin worker` and `vitaltwin demo` load this checkpoint by default: without it the
    # image's workers would exit at start and restart forever.
    shipped = {p.name for p in (REPO / "models" / "checkpoints" / "default").iterdir()}
    assert {"metadata.json", "weights.pt"} <= shipped
    assert {f"models/checkpoints/default/{n}" for n in shipped} <= names
    assert "dashboards/ward/index.html" in names
    assert any(n.startswith("dashboards/grafana/dashboards/") for n in names)
    assert "twin/py.typed" in names
