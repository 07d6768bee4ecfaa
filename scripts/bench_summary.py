"""Summarise benchmark JSON files (var/bench/*.json) as Markdown, one table per benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for key, inner in value.items():
            out += leaves(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list):
        return [(prefix, f"[{len(value)} items]")]
    return [(prefix, value)]


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def main(directory: str) -> None:
    for path in sorted(Path(directory).glob("*.json")):
        data = json.loads(path.read_text())
        sys.stdout.write(f"\n### {path.stem}\n\n| metric | value |\n|---|---|\n")
        for key, value in leaves(data):
            sys.stdout.write(f"| {key} | {fmt(value)} |\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "var/bench")
