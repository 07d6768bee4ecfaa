"""Running a trial: plan (enrol, allocate, shard), simulate shards in processes, collect records.

Determinism. Everything a twin gets - covariates, episodes, noise, allocation, clinician
response draws - is derived from the trial seed and the twin's index, never from the order or
the process it runs in. Shards are fixed blocks of twins per arm (``design.shard_size``, part
of the spec), so a forecaster batching across a shard sees the same batches whatever the
number of workers. The records are therefore identical for any ``workers`` (tested).

Resume. Each shard is written to ``OUT/shards/<arm>-<n>.parquet`` atomically (a temporary
file renamed into place) with its run statistics in the parquet metadata; a rerun skips the
shards already there. ``OUT/trial.json`` holds the spec and its digest; a directory holding a
different trial is refused (``ResumeError``) unless ``fresh`` clears it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simulators.engine import simulate
from simulators.interventions import Policy, Schedule
from simulators.trials.allocation import allocate
from simulators.trials.endpoints import chunk_records
from simulators.trials.errors import ResumeError, TrialError
from simulators.trials.forecaster import RiskModel, load_risk_model
from simulators.trials.policies import (
    MonitoringPolicy,
    SignalRulePolicy,
    calendar_schedule,
    protocol_schedule,
)
from simulators.trials.population import Enrolment, base_config, enrol
from simulators.trials.spec import POPULATION_KINDS, ForecasterSpec, TrialSpec

log = logging.getLogger(__name__)
MANIFEST = "trial.json"
RECORDS = "records.parquet"
SHARDS = "shards"
_META_KEY = b"vitaltwin.trial"


@dataclass(frozen=True)
class Shard:
    arm: str
    number: int
    twins: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.arm}-{self.number:05d}"


@dataclass(frozen=True)
class Plan:
    spec: TrialSpec
    enrolment: Enrolment
    allocation: dict[str, npt.NDArray[np.int64]]
    shards: tuple[Shard, ...]

    @property
    def pool(self) -> int:
        return self.enrolment.screened

    def summary(self) -> dict[str, Any]:
        return {
            "screened": self.enrolment.screened,
            "excluded": dict(self.enrolment.excluded),
            "enrolled": len(self.enrolment.population),
            "design": self.spec.design.kind,
            "allocated": {a: int(v.size) for a, v in self.allocation.items()},
            "shards": len(self.shards),
            "twin_runs": int(sum(len(s.twins) for s in self.shards)),
        }


def plan_trial(spec: TrialSpec) -> Plan:
    """Enrol, allocate and cut the arms into shards (cheap: no physiology is simulated)."""
    enrolment = enrol(spec)
    allocation = allocate(spec, enrolment.population)
    shards: list[Shard] = []
    for arm in spec.arms:
        twins = allocation[arm.name]
        size = spec.shard_size(arm)
        for k, lo in enumerate(range(0, twins.size, size)):
            shards.append(Shard(arm.name, k, tuple(int(t) for t in twins[lo : lo + size])))
    return Plan(spec, enrolment, allocation, tuple(shards))


# ---- one shard ----------------------------------------------------------------------------------

_RISK_MODELS: dict[str, tuple[RiskModel, str]] = {}  # per process: a forecaster loads once


def _risk_model(spec: ForecasterSpec, threads: int | None) -> tuple[RiskModel, str]:
    key = spec.model_dump_json()
    if key not in _RISK_MODELS:
        _RISK_MODELS[key] = load_risk_model(spec, threads)
    return _RISK_MODELS[key]


@dataclass
class ShardResult:
    records: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def run_shard(spec: TrialSpec, pool: int, shard: Shard, threads: int | None = None) -> ShardResult:
    """Simulate one shard's twins under its arm and extract their endpoint records."""
    arm = spec.arm(shard.arm)
    config = base_config(spec, pool, usual_care=spec.uses_usual_care(arm))
    twins = list(shard.twins)
    schedule: Schedule | None = None
    policy: Policy | None = None
    note = ""
    if arm.kind == "protocol":
        schedule = protocol_schedule(arm, config, twins)
    elif arm.kind == "schedule":
        schedule = calendar_schedule(arm, config, twins)
    elif arm.kind == "signal_rule":
        policy = SignalRulePolicy(arm, spec.seed, config.start)
    elif arm.kind == "monitoring":
        model: RiskModel | None = None
        if arm.forecaster is not None:
            model, note = _risk_model(arm.forecaster, threads)
            _check_horizons(arm, model)
        policy = MonitoringPolicy(arm, spec.seed, config.start, model)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    frames = [
        chunk_records(
            chunk,
            spec.endpoints.condition,
            spec.trial_drugs(),
            getattr(policy, "logs", None) if policy is not None else None,
            spec.endpoints.glucose_tir,
        )
        for chunk in simulate(
            config,
            indices=twins,
            schedule=schedule,
            policy=policy,
            signals=spec.endpoints.glucose_tir,
        )
    ]
    records = pd.concat(frames, ignore_index=True)
    records.insert(0, "arm", shard.arm)
    stats: dict[str, Any] = {
        "shard": shard.key,
        "arm": shard.arm,
        "kind": arm.kind,
        "twins": len(twins),
        "days": spec.days,
        "wall_s": round(time.perf_counter() - wall0, 4),
        "cpu_s": round(time.process_time() - cpu0, 4),
    }
    if isinstance(policy, MonitoringPolicy):
        stats["timers_s"] = {k: round(v, 4) for k, v in policy.timers.items()}
        stats["forecasts"] = policy.forecasts
    if note:
        stats["forecaster"] = note
    return ShardResult(records, stats)


def _check_horizons(arm: Any, model: RiskModel) -> None:
    from twin.alerting import ForecastRiskRule

    have = {float(h) for h in model.horizons_h}
    for rule in arm.policy.rules:
        if isinstance(rule, ForecastRiskRule) and float(rule.horizon_h) not in have:
            raise TrialError(
                f"arm {arm.name}: rule {rule.name} reads the {rule.horizon_h:g} h risk, but"
                f" {model.name} forecasts {sorted(have)} h"
            )


def _write_shard(out: Path, result: ShardResult, key: str) -> None:
    table = pa.Table.from_pandas(result.records, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps(result.stats).encode()
    table = table.replace_schema_metadata(meta)
    final = out / SHARDS / f"{key}.parquet"
    tmp = final.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, final)


def _work(spec_json: str, pool: int, shard: Shard, out: str, threads: int | None) -> dict[str, Any]:
    """Process-pool entry point: run and store one shard; returns its statistics."""
    spec = TrialSpec.model_validate_json(spec_json)
    result = run_shard(spec, pool, shard, threads)
    _write_shard(Path(out), result, shard.key)
    return result.stats


# ---- the whole trial ---------------------------------------------------------------------------


@dataclass
class TrialRun:
    plan: Plan
    records: pd.DataFrame
    stats: list[dict[str, Any]]
    out: Path
    wall_s: float = 0.0

    @property
    def notes(self) -> list[str]:
        return sorted({s["forecaster"] for s in self.stats if "forecaster" in s})


def _prepare(out: Path, spec: TrialSpec, plan: Plan, fresh: bool) -> None:
    manifest = out / MANIFEST
    if fresh and out.exists():
        for name in (MANIFEST, RECORDS, SHARDS):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    if manifest.exists():
        held = json.loads(manifest.read_text())
        if held.get("digest") != spec.digest():
            raise ResumeError(
                f"{out} holds results of another trial spec ({held.get('name')!r}, digest"
                f" {held.get('digest')}); use another --out or --fresh to discard them"
            )
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    body = {
        "name": spec.name,
        "digest": spec.digest(),
        "spec": spec.model_dump(mode="json"),
        "plan": plan.summary(),
    }
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, manifest)


def shard_path(out: Path, shard: Shard) -> Path:
    return out / SHARDS / f"{shard.key}.parquet"


def read_shard_stats(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_META_KEY)
    return json.loads(raw) if raw else {}


def run_trial(
    spec: TrialSpec,
    out: str | Path,
    *,
    workers: int = 1,
    fresh: bool = False,
    only: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
    plan: Plan | None = None,
) -> TrialRun | None:
    """Run every shard not stored yet (``only``: just these shard keys); returns the collected
    run, or None when ``only`` left shards missing (an intentionally partial run)."""
    out = Path(out)
    began = time.perf_counter()
    plan = plan or plan_trial(spec)
    _prepare(out, spec, plan, fresh)
    wanted = set(only) if only is not None else None
    todo = [
        s
        for s in plan.shards
        if not shard_path(out, s).exists() and (wanted is None or s.key in wanted)
    ]
    done_before = sum(len(s.twins) for s in plan.shards if shard_path(out, s).exists())
    if progress is not None and done_before:
        progress(done_before)
    # Slow (in-the-loop) shards first: better balance across processes; results are unchanged.
    todo.sort(key=lambda s: (spec.arm(s.arm).kind in POPULATION_KINDS, s.arm, s.number))
    spec_json = spec.model_dump_json()
    threads = 1 if workers > 1 else None
    if workers <= 1 or len(todo) <= 1:
        for shard in todo:
            _work(spec_json, plan.pool, shard, str(out), threads)
            if progress is not None:
                progress(len(shard.twins))
    else:
        _parallel(todo, spec_json, plan.pool, out, workers, threads, progress)
    if any(not shard_path(out, s).exists() for s in plan.shards):
        return None
    return collect(out, plan, wall_s=time.perf_counter() - began)


def _parallel(
    todo: Sequence[Shard],
    spec_json: str,
    pool: int,
    out: Path,
    workers: int,
    threads: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futures: dict[Future[dict[str, Any]], Shard] = {
            ex.submit(_work, spec_json, pool, s, str(out), threads): s for s in todo
        }
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()  # re-raise a worker's error here
                    if progress is not None:
                        progress(len(futures[f].twins))
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def collect(out: str | Path, plan: Plan, wall_s: float = 0.0) -> TrialRun:
    """Read every shard (in plan order) into one records table and write ``records.parquet``."""
    out = Path(out)
    frames, stats = [], []
    for shard in plan.shards:
        path = shard_path(out, shard)
        frames.append(pd.read_parquet(path))
        stats.append(read_shard_stats(path))
    records = pd.concat(frames, ignore_index=True)
    records.to_parquet(out / RECORDS, index=False)
    return TrialRun(plan, records, stats, out, wall_s)


def load_run(out: str | Path) -> TrialRun:
    """A finished run from its output directory (for re-analysis and reports)."""
    out = Path(out)
    manifest = out / MANIFEST
    if not manifest.exists():
        raise TrialError(f"{out} holds no trial ({MANIFEST} is missing)")
    spec = TrialSpec.model_validate(json.loads(manifest.read_text())["spec"])
    plan = plan_trial(spec)
    missing = [s.key for s in plan.shards if not shard_path(out, s).exists()]
    if missing:
        raise TrialError(
            f"{out}: {len(missing)} shards not run yet (run the trial again to resume)"
        )
    return collect(out, plan)


__all__ = [
    "Plan",
    "Shard",
    "ShardResult",
    "TrialRun",
    "collect",
    "load_run",
    "plan_trial",
    "run_shard",
    "run_trial",
]
