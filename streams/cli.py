"""The ``vitaltwin`` command line. Each subcommand lives in ``streams.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Subcommand modules, each exposing ``register(subparsers)`` that adds its parser and sets
# ``func`` (``args -> int`` exit code) as the parser default.
COMMANDS: tuple[str, ...] = (
    "demo",
    "simulate",
    "alerts",
    "ingest",
    "produce",
    "worker",
    "serve",
    "dashboards",
    "trial",
    "train",
    "evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitaltwin", description="Streaming digital-twin patient monitoring."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"streams.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
