"""The package boundaries DEVELOPERS.md sets, checked on the source (imports point inward)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"twin", "models", "simulators", "streams", "dashboards"}
STDLIB = set(sys.stdlib_module_names)

# package -> our packages it may import
ALLOWED_OURS = {
    "twin": set(),
    "models": {"twin"},
    "simulators": {"twin", "models"},
    "dashboards": {"twin"},
    "streams": OURS,
}
# The pure core: stdlib, numpy and pydantic (and pydantic's own core) only.
TWIN_THIRD_PARTY = {"numpy", "pydantic", "pydantic_core"}


def imports_of(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name.split(".")[0]) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED_OURS))
def test_imports_point_inward(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p, m in imports_of(package)
        if m in OURS and m != package and m not in ALLOWED_OURS[package]
    ]
    assert bad == []


def test_twin_uses_only_stdlib_numpy_and_pydantic() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p, m in imports_of("twin")
        if m not in STDLIB and m not in TWIN_THIRD_PARTY and m != "twin"
    ]
    assert bad == []


@pytest.mark.parametrize("package", ["twin", "simulators", "streams", "dashboards"])
def test_only_models_imports_torch(package: str) -> None:
    heavy = {"torch", "lightning", "pytorch_forecasting", "onnxruntime"}
    assert [f"{p.relative_to(ROOT)}" for p, m in imports_of(package) if m in heavy] == []


def test_no_print_in_library_code() -> None:
    offenders = []
    for package in sorted(OURS):
        for path in (ROOT / package).rglob("*.py"):
            if "commands" in path.parts:
                continue  # CLI commands write their output to stdout on purpose
            tree = ast.parse(path.read_text())
            offenders += [
                f"{path.relative_to(ROOT)}:{n.lineno}"
                for n in ast.walk(tree)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
            ]
    assert offenders == []
