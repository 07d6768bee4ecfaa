"""Virtual-trial benchmark: twins x days simulated per second, population and in-the-loop arms.

    python benchmarks/bench_trials.py --out var/bench/trials.json            # a few minutes
    python benchmarks/bench_trials.py --out var/bench/trials.json --quick    # about a minute
    python benchmarks/bench_trials.py --out ... --tft models/checkpoints/default   # + the TFT

Stages:

- ``population``: the target - a 10,000-twin, 2-arm, 7-day population trial (usual care vs
  an antibiotic protocol on top of it) run with ``run_trial`` on ``--workers`` processes, as
  a randomised trial (10,000 twin runs) and as a paired one (20,000). Target: < 60 s wall on
  2 cores. Includes enrolment, allocation, shards written to parquet and collected.
- ``in_the_loop``: a monitoring arm (NEWS2 >= 5 through the production twin core and alert
  policy) on one process, and where its time goes: simulation (signals), delivering records
  (rendering ``Record``s for each decision), ``record.to_event()`` (ingress parsing),
  ``twin.apply_many``, the alert policy, the forecaster. The first two are measured by running
  the same twins without a policy and with a policy that does nothing; the rest by the
  policy's own timers.
- ``in_the_loop_forecaster``: the same with the news2_trend stand-in forecaster in the loop
  (and, with ``--tft``, with the TFT checkpoint through ``models.fastpath``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported, by this process and its workers

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators import Intervention, Observation, simulate  # noqa: E402
from simulators.trials import MonitoringPolicy, load_risk_model, parse_spec, run_trial  # noqa: E402
from simulators.trials.population import base_config  # noqa: E402
from simulators.trials.spec import ForecasterSpec, MonitoringArm  # noqa: E402

TARGET_POPULATION_S = 60.0


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _population_spec(design: str, size: int, days: float) -> dict[str, Any]:
    return {
        "name": f"bench-population-{design}",
        "seed": 1,
        "days": days,
        "population": {"size": size},
        "design": {"kind": design, "control": "usual_care"}
        | ({"strata": ["setting", "age_band"]} if design == "randomised" else {}),
        "endpoints": {"condition": "sepsis"},
        "arms": [
            {"name": "usual_care", "kind": "usual_care"},
            {
                "name": "early_antibiotics",
                "kind": "protocol",
                "condition": "sepsis",
                "delay_h": 1,
                "usual_care": True,
                "regimen": {"drug": "antibiotic", "count": 21, "every_h": 8},
            },
        ],
    }


def population(size: int, days: float, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"twins": size, "arms": 2, "days": days, "workers": workers}
    for design in ("randomised", "paired"):
        spec = parse_spec(_population_spec(design, size, days))
        tmp = Path(tempfile.mkdtemp(prefix="bench-trial-"))
        try:
            wall0, cpu0 = time.perf_counter(), _cpu()
            run = run_trial(spec, tmp, workers=workers)
            wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        assert run is not None
        runs = len(run.records)
        out[design] = {
            "twin_runs": runs,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "twin_days_per_wall_s": round(runs * days / wall),
            "twin_days_per_cpu_s": round(runs * days / cpu),
            "meets_target": wall < TARGET_POPULATION_S,
        }
    return out


class _Idle:
    """A policy that decides nothing: the engine still delivers every record to it."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval

    def decide(self, observation: Observation) -> Iterable[Intervention]:
        return ()


def in_the_loop(
    twins: int, days: float, forecaster: ForecasterSpec | None = None
) -> dict[str, Any]:
    spec = parse_spec(
        {
            "name": "bench-loop",
            "seed": 3,
            "days": days,
            "background_usual_care": True,
            "population": {"size": twins, "home_fraction": 0.0, "risk": {"sepsis": 20}},
            "design": {"kind": "paired", "control": "loop"},
            "arms": [
                {
                    "name": "loop",
                    "kind": "monitoring",
                    "alert_policy": "default",  # the production rules: the full alert burden
                    "act_on": ["news2_high", "news2_medium"]
                    + ([] if forecaster is None else ["forecast_deterioration_12h"]),
                    "forecaster": None if forecaster is None else forecaster.model_dump(),
                    "regimen": {"drug": "antibiotic", "count": 6, "every_h": 8},
                }
            ],
        }
    )
    arm = spec.arms[0]
    assert isinstance(arm, MonitoringArm)
    config = base_config(spec, twins, usual_care=True)
    indices = list(range(twins))
    model, note = (None, "") if forecaster is None else load_risk_model(forecaster, threads=1)

    def timed(**kwargs: Any) -> float:
        t0 = time.process_time()
        for _ in simulate(config, indices=indices, signals=False, **kwargs):
            pass
        return time.process_time() - t0

    t0 = time.process_time()
    for _ in simulate(config, indices=indices):
        pass
    sim = time.process_time() - t0
    idle = timed(policy=_Idle(timedelta(minutes=arm.review_every_min)))
    policy = MonitoringPolicy(arm, spec.seed, config.start, model)
    total = timed(policy=policy)
    timers = policy.timers
    twin_days = twins * days
    parts = {
        "simulation_s": sim,
        "record_delivery_s": max(idle - sim, 0.0),
        "to_event_s": timers["to_event"],
        "twin_apply_s": timers["apply"],
        "forecaster_s": timers["forecast"],
        "alert_policy_s": timers["alerts"],
    }
    parts["other_s"] = max(total - sum(parts.values()), 0.0)
    return {
        "twins": twins,
        "days": days,
        "forecaster": note or None,
        "forecasts": policy.forecasts,
        "cpu_s": round(total, 2),
        "twin_days_per_cpu_s": round(twin_days / total, 3),
        "twin_days_per_cpu_s_without_loop": round(twin_days / sim, 1),
        "time_share": {k.removesuffix("_s"): round(v / total, 3) for k, v in parts.items()},
        "seconds": {k: round(v, 2) for k, v in parts.items()},
        "alerts": sum(log.alerts for log in policy.logs.values()),
        "courses": sum(log.courses for log in policy.logs.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "trials.json")
    parser.add_argument("--quick", action="store_true", help="smaller populations (about a minute)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tft", default=None, help="a TFT checkpoint directory to put in the loop")
    args = parser.parse_args()
    size = 2_000 if args.quick else 10_000
    loop_twins, loop_days = (8, 1.0) if args.quick else (24, 2.0)
    result: dict[str, Any] = {
        "benchmark": "trials",
        "mode": "quick" if args.quick else "full",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "target_population_wall_s": TARGET_POPULATION_S,
        "population": population(size, 7.0, args.workers),
        "in_the_loop": in_the_loop(loop_twins, loop_days),
        "in_the_loop_forecaster": in_the_loop(
            loop_twins, loop_days, ForecasterSpec(kind="news2_trend")
        ),
    }
    if args.tft:
        try:
            result["in_the_loop_tft"] = in_the_loop(
                loop_twins, loop_days, ForecasterSpec(kind="tft", path=args.tft)
            )
        except Exception as exc:  # the TFT stage is optional: record why it failed
            result["in_the_loop_tft"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
