"""``vitaltwin trial``: run virtual trials from a YAML spec, and report on them.

    vitaltwin trial check examples/trials/early_sepsis.yaml
    vitaltwin trial run examples/trials/early_sepsis.yaml --out var/trials/early_sepsis --workers 2
    vitaltwin trial report var/trials/early_sepsis

``run`` resumes where an interrupted run stopped (finished shards are kept); ``--fresh``
starts over. An adapter only: parsing arguments, a progress bar and a summary; the work is in
``simulators.trials``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simulators import SimulatorError
from simulators.trials import analyse, load_run, load_spec, plan_trial, run_trial
from simulators.trials.report import write_report, write_results


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "trial",
        help="virtual trials: arms against populations of twins",
        description="Run a virtual trial from a YAML specification (docs/trials.md).",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    run = sub.add_parser("run", help="simulate every twin under its arm(s), analyse, report")
    run.add_argument("spec", type=Path, help="trial specification (YAML)")
    run.add_argument(
        "--out", type=Path, default=None, help="output directory (default var/trials/NAME)"
    )
    run.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: CPUs)"
    )
    run.add_argument("--fresh", action="store_true", help="discard results already in --out")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    check = sub.add_parser("check", help="validate a spec and show the enrolment and shards")
    check.add_argument("spec", type=Path)
    check.set_defaults(func=_check)

    report = sub.add_parser("report", help="re-analyse a finished run and rewrite its report")
    report.add_argument("out", type=Path, help="the run's output directory")
    report.set_defaults(func=_report)


def _guard(fn: Any, args: argparse.Namespace) -> int:
    try:
        code: int = fn(args)
        return code
    except SimulatorError as exc:
        sys.stderr.write(f"vitaltwin trial {args.action}: {exc}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    return _guard(_do_run, args)


def _check(args: argparse.Namespace) -> int:
    return _guard(_do_check, args)


def _report(args: argparse.Namespace) -> int:
    return _guard(_do_report, args)


def _do_check(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    plan = plan_trial(spec)
    s = plan.summary()
    lines = [
        f"{args.spec}: valid (trial {spec.name}, digest {spec.digest()})",
        f"screened {s['screened']:,}, enrolled {s['enrolled']:,}, design {s['design']}",
        "allocated: " + ", ".join(f"{a} {n:,}" for a, n in s["allocated"].items()),
        f"{s['shards']} shards, {s['twin_runs']:,} twin runs of {spec.days:g} days",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _do_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    out = args.out or Path("var/trials") / spec.name
    plan = plan_trial(spec)
    total = plan.summary()["twin_runs"]
    began = time.perf_counter()
    with tqdm(
        total=total, unit="twin", file=sys.stderr, disable=args.no_progress, desc=spec.name
    ) as bar:
        run = run_trial(
            spec,
            out,
            workers=max(1, args.workers),
            fresh=args.fresh,
            progress=bar.update,
            plan=plan,
        )
    if run is None:  # pragma: no cover - only ``only=`` leaves shards out
        sys.stderr.write("vitaltwin trial run: some shards are missing; run again to resume\n")
        return 1
    result = analyse(spec, run.records, plan.summary(), run.notes)
    write_results(out, result)
    report = write_report(out, result)
    elapsed = time.perf_counter() - began
    sys.stdout.write(
        "\n".join(
            [f"ran {total:,} twin runs in {elapsed:.1f} s", *_summary(result), f"report: {report}"]
        )
        + "\n"
    )
    return 0


def _do_report(args: argparse.Namespace) -> int:
    run = load_run(args.out)
    spec = run.plan.spec
    result = analyse(spec, run.records, run.plan.summary(), run.notes)
    write_results(args.out, result)
    report = write_report(args.out, result)
    sys.stdout.write("\n".join([*_summary(result), f"report: {report}"]) + "\n")
    return 0


def _summary(result: dict[str, Any]) -> list[str]:
    def ci(e: dict[str, Any], scale: float = 1.0) -> str:
        if e.get("value") is None:
            return "n/a"
        lo, hi = e.get("lo"), e.get("hi")
        band = "" if lo is None or hi is None else f" [{lo * scale:.3g}, {hi * scale:.3g}]"
        return f"{e['value'] * scale:.3g}{band}"

    lines = [f"notes: {n}" for n in result.get("notes", [])]
    for arm, s in result["arms"].items():
        alerts = s.get("alerts_per_patient_day")
        extra = f", alerts/patient-day {ci(alerts)}" if alerts else ""
        lines.append(
            f"{arm}: n {s['n']}, critical {ci(s['critical'], 100)} %, died {ci(s['died'], 100)} %{extra}"
        )
    primary = result["trial"]["primary"]
    for c in result["comparisons"]:
        e = c[primary]
        hr = c["time_to_critical"]["hazard_ratio"]
        lines.append(
            f"{c['arm']} vs {c['reference']}: RD {primary} {ci(e['risk_difference'], 100)} pp,"
            f" RR {ci(e['relative_risk'])}, HR {ci(hr)}, {e['nnt'].get('text', 'n/a')}"
        )
    return lines
