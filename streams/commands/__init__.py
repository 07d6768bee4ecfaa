"""The CLI's subcommands, one module each; argument types they share live here."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1 (workers, records)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
