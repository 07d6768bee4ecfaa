"""Record sources for the embedded runtime and the producers: JSON-lines files.

A JSON-lines file holds one record per line: a wearable sample (or a batch ``{"samples": [...]}``)
or a FHIR resource/Bundle (anything with ``resourceType``). Positions are line numbers, so an
interrupted ingest resumes after the last committed line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from streams.ingress import SourceKind
from streams.pipeline import Record

Clock = Callable[[], datetime]


def kind_of(line: bytes) -> SourceKind:
    """FHIR if the record names a ``resourceType`` at top level, otherwise a wearable sample."""
    try:
        decoded = json.loads(line)
    except ValueError:
        return SourceKind.WEARABLE  # undecodable: the ingress dead-letters it as malformed
    if isinstance(decoded, dict) and "resourceType" in decoded:
        return SourceKind.FHIR
    return SourceKind.WEARABLE


class JsonLinesSource:
    def __init__(self, path: str | Path, clock: Clock) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.resolve()}"
        self._clock = clock

    def records(self, resume_after: str | None) -> Iterator[tuple[str, Record]]:
        skip = 0 if resume_after is None else int(resume_after)
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if number <= skip:
                    continue
                line = line.strip()
                if not line:
                    continue
                record = Record(
                    kind_of(line), line, self._clock(), source=self.name, position=str(number)
                )
                yield str(number), record


class SimulatorSource:
    """A simulated cohort as a record source. Positions count delivered records; the simulator
    is deterministic for a given configuration, so resuming regenerates and skips."""

    def __init__(self, config: Any) -> None:
        from simulators.records import RecordKind

        self.config = config
        self.name = f"simulator:seed={config.seed}:patients={config.patients}:days={config.days}"
        self._fhir_kind = RecordKind.FHIR

    def records(self, resume_after: str | None) -> Iterator[tuple[str, Record]]:
        from simulators.engine import stream

        skip = 0 if resume_after is None else int(resume_after)
        for number, rec in enumerate(stream(self.config), start=1):
            if number <= skip:
                continue
            kind = SourceKind.FHIR if rec.kind is self._fhir_kind else SourceKind.WEARABLE
            yield (
                str(number),
                Record(
                    kind, rec.payload, rec.received_at, source="simulator", position=str(number)
                ),
            )
