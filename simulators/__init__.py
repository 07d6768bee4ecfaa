"""Synthetic patient cohorts for vitaltwin: wearable and EHR streams with ground truth.

Layers, each its own module: ``cohort`` (who), ``conditions`` and ``physiology`` (the hidden
course of acute episodes), ``care`` (simulated usual care), ``interventions`` (treatments as
data; schedules and policies), ``vitals`` and ``glucose`` (true signals), ``devices`` (what the
sensors send, and when), ``ehr`` and ``fhir`` (the EHR side), ``engine`` (running a cohort),
``records`` (the delivered stream), ``dataset`` (parquet output), ``plot`` (a patient's PNG).
The models and their numbers are documented in docs/simulator.md.
"""

from simulators.conditions import Condition, Outcome
from simulators.config import DEFAULT_START, DeviceConfig, SimulationConfig, parse_shard
from simulators.dataset import DatasetWriter, read_manifest, read_table
from simulators.engine import ChunkResult, Course, simulate, simulate_chunk, stream
from simulators.errors import ConfigError, PolicyError, SimulatorError
from simulators.interventions import Drug, Intervention, Observation, Policy, Schedule
from simulators.plot import plot_patient
from simulators.records import Record, RecordKind

__all__ = [
    "DEFAULT_START",
    "ChunkResult",
    "Condition",
    "ConfigError",
    "Course",
    "DatasetWriter",
    "DeviceConfig",
    "Drug",
    "Intervention",
    "Observation",
    "Outcome",
    "Policy",
    "PolicyError",
    "Record",
    "RecordKind",
    "Schedule",
    "SimulationConfig",
    "SimulatorError",
    "parse_shard",
    "plot_patient",
    "read_manifest",
    "read_table",
    "simulate",
    "simulate_chunk",
    "stream",
]
