"""vitaltwin's pure core: events, twin state, the transition, early-warning scores.

``twin`` depends on the standard library, numpy and pydantic only. It performs no I/O
and never reads a clock: event time is the only time.
"""

from twin.batch import VitalBatch, minute_runs, read_vital_samples, readings
from twin.effects import Effect
from twin.errors import InvalidEvent, Reason, TwinError
from twin.events import Event, dump_event, parse_event, parse_event_json
from twin.state import DEFAULT_CONFIG, TwinConfig, TwinState
from twin.transition import apply, apply_many, apply_runs, apply_samples

__all__ = [
    "DEFAULT_CONFIG",
    "Effect",
    "Event",
    "InvalidEvent",
    "Reason",
    "TwinConfig",
    "TwinError",
    "TwinState",
    "VitalBatch",
    "apply",
    "apply_many",
    "apply_runs",
    "apply_samples",
    "dump_event",
    "minute_runs",
    "parse_event",
    "parse_event_json",
    "read_vital_samples",
    "readings",
]
