"""Measure the alert policy on a simulated cohort: alerts per patient-day, PPV, lead time.

Run: ``python benchmarks/bench_alerts.py --out var/bench/alerts.json`` (``--quick`` for a
smaller cohort).

The cohort is the simulator's (``simulators.stream``), enriched for deterioration so that a
laptop-sized run sees enough episodes, with usual care switched off so that alerts are judged
against untreated courses. Every simulated record goes through the twin exactly as in
production (``twin.apply_many``), a minute of event time at a time, with
``twin.alerting.evaluate`` after each minute and the default policy (no forecaster here, so the
forecast rule stays silent). The outcome per patient is the ground truth's first critical event;
a firing alert counts as a true positive when a critical event follows within ``--window-h``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from simulators import SimulationConfig, simulate, stream
from simulators.dataset import labels_table
from twin import TwinState, apply_many
from twin.alerting import DEFAULT_POLICY, AlertBook, Episode, alert_metrics, evaluate
from twin.events import Event


def outcomes_of(config: SimulationConfig) -> dict[str, int | None]:
    """Each patient's first critical event (epoch ms) from the ground truth, or None."""
    out: dict[str, int | None] = {}
    for chunk in simulate(config, signals=False):
        out.update(dict.fromkeys(chunk.patient_ids))
        labels = labels_table(chunk).to_pydict()
        for pid, critical in zip(labels["patient_id"], labels["critical_at"], strict=True):
            if critical is not None:
                ms = int(critical.timestamp() * 1000)
                current = out.get(pid)
                out[pid] = ms if current is None else min(current, ms)
    return out


def events_by_patient(config: SimulationConfig) -> dict[str, list[Event]]:
    """The delivered stream, as twin events, per patient in arrival order."""
    by_patient: dict[str, list[Event]] = defaultdict(list)
    for record in stream(config):
        event = record.to_event()
        if event is not None:
            by_patient[record.patient_id].append(event)
    return by_patient


def run_patient(events: list[Event]) -> tuple[list[Episode], int, float]:
    """Episodes, evaluate calls and seconds spent in evaluate."""
    state: TwinState | None = None
    book: AlertBook | None = None
    episodes: dict[str, Episode] = {}
    calls, spent = 0, 0.0
    chunk: list[Event] = []

    def step() -> None:
        nonlocal state, book, calls, spent
        state, _ = apply_many(state, chunk)
        assert state is not None
        start = time.perf_counter()
        book, notes = evaluate(book, state, state.watermark_ms, DEFAULT_POLICY)
        spent += time.perf_counter() - start
        calls += 1
        for n in notes:
            if n.status == "firing":
                ep = episodes.get(n.alert_id)
                count = 1 if ep is None else ep.notifications + 1
                episodes[n.alert_id] = Episode(n.patient_id, n.rule, n.starts_at_ms, count)

    minute = None
    for ev in events:
        if minute is not None and ev.t_ms // 60_000 != minute and chunk:
            step()
            chunk = []
        minute = ev.t_ms // 60_000
        chunk.append(ev)
    if chunk:
        step()
    return list(episodes.values()), calls, spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench/alerts.json"))
    parser.add_argument("--patients", type=int, default=120)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--enrich", type=float, default=6.0, help="onset hazard multiplier")
    parser.add_argument("--window-h", type=float, default=24.0)
    parser.add_argument("--quick", action="store_true", help="30 patients x 1 day")
    args = parser.parse_args()
    if args.quick:
        args.patients, args.days = 30, 1.0

    started = time.perf_counter()
    risk = dict.fromkeys(("sepsis", "hf_decompensation", "copd_exacerbation"), args.enrich)
    config = SimulationConfig(
        patients=args.patients, days=args.days, seed=args.seed, usual_care=False, risk=risk
    )
    outcomes = outcomes_of(config)
    episodes: list[Episode] = []
    calls, spent = 0, 0.0
    for events in events_by_patient(config).values():
        eps, c, t = run_patient(events)
        episodes += eps
        calls, spent = calls + c, spent + t
    patient_days = args.patients * args.days
    report = {
        "benchmark": "alerts",
        "cohort": {
            "generator": "simulators.stream (usual care off, onset hazards enriched)",
            "patients": args.patients,
            "days": args.days,
            "patient_days": patient_days,
            "with_critical_event": sum(1 for v in outcomes.values() if v is not None),
            "risk_multipliers": risk,
            "seed": args.seed,
        },
        "policy": "twin.alerting.DEFAULT_POLICY",
        "window_h": args.window_h,
        "metrics": alert_metrics(
            episodes, outcomes=outcomes, patient_days=patient_days, window_h=args.window_h
        ),
        "evaluate_us_per_call": round(spent / max(calls, 1) * 1e6, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
