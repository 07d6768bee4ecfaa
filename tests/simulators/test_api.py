"""Package hygiene: the public API, import rules, no clocks, no prints."""

from __future__ import annotations

import ast
from pathlib import Path

import simulators

PACKAGE = Path(simulators.__file__).parent


def test_all_is_importable() -> None:
    assert len(set(simulators.__all__)) == len(simulators.__all__)
    for name in simulators.__all__:
        assert hasattr(simulators, name), name


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.glob("*.py"))]


def test_simulators_never_import_streams() -> None:
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("streams"), path
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("streams") for a in node.names), path


def test_no_wall_clock_and_no_print() -> None:
    banned_attrs = {"now", "utcnow", "today", "time", "perf_counter", "monotonic"}
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", path
            if isinstance(node, ast.Attribute) and node.attr in banned_attrs:
                base = node.value
                assert not (
                    isinstance(base, ast.Name) and base.id in {"datetime", "time", "date"}
                ), (path, node.attr)


def test_one_error_base() -> None:
    for err in (simulators.ConfigError, simulators.PolicyError):
        assert issubclass(err, simulators.SimulatorError)
