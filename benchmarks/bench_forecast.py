"""Benchmark streaming inference: patient-forecasts/s, fast path vs pytorch-forecasting predict().

Run: ``python benchmarks/bench_forecast.py --out var/bench/forecast.json [--model DIR]``
(``--quick`` for fewer repetitions, ``--threads 1,2,1x2`` to measure several settings: ``T`` is
T torch threads, ``TxW`` T torch threads in each of W workers that run chunks of a batch at once).

Inputs are real twins: a synthetic cohort's events are folded through ``twin.apply_many`` for
a day, and the resulting states are repeated (under new ids) up to the largest batch. For each
batch size (1, 64, 1000), in the same run and interleaved call by call (the machines are shared:
load drifts during a run, and interleaving spreads it over every candidate alike; each timed
call follows an untimed call of the same candidate, as in a service that calls one path over
and over):

- ``fast_lean`` (the default backend: the lean network, traced), ``fast_torchscript`` (the
  stock network traced, bit-identical to ``predict()``), ``fast_torch`` (eager) and ``fast_onnx``
  (onnxruntime, when the checkpoint ships ``model.onnx``; otherwise ``fast_onnx_exported``, a
  graph exported here, unverified, to compare the runtime):
  ``Forecaster.forecast_states`` - features from the twin states (numpy), the network, risk by
  horizon and the explanation records: everything the runtime hands on;
- ``network_and_risk_only`` and the three stages of the default path on their own;
- ``predict``: the same windows through pytorch-forecasting: long data frame ->
  ``TimeSeriesDataSet`` -> ``model.predict(mode="quantiles")`` (``predict_only`` times the
  predict call alone, dataset prebuilt).

Every candidate, ``predict()`` included, runs under the same torch thread setting: one setting
per process (changing torch's thread count inside a process rebuilds its pool and distorts the
next calls), so ``--threads 1,2,1x2`` runs one child process per setting and merges their
reports. ``predict()`` has no workers: in a ``1x2`` process it runs at one torch thread, so the
merged report also sets the fast path against the fastest ``predict()`` of any setting
(``speedup_vs_fastest_predict_at_64``), which is the figure the 10x target is judged on.

Targets (issue): fast path >= 10x ``predict`` at batch 64 (aim 20x), >= 5,000
patient-forecasts/s at batch 1000, p99 <= 200 ms for a batch of 64, and agreement with
``predict()`` to 1e-4 (the network's output; the anchored forecast is compared with
``predict()``'s output anchored by the same checkpoint). Timings on shared machines vary 30-50 % between runs: compare within one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")


def build_states(n: int, seed: int = 5) -> list:
    from models import synthetic
    from models.replay import twin_events
    from twin import apply_many

    ds = synthetic.cohort(patients=16, days=1.2, seed=seed)
    end = int(ds.samples["t_ms"].min()) + 26 * 3_600_000
    base = [apply_many(None, twin_events(ds, p, end))[0] for p in ds.patient_ids]
    states = []
    for i in range(n):
        st = base[i % len(base)].copy()
        st.patient_id = f"bench-{i:05d}"
        states.append(st)
    return states


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(times: list[float], batch: int) -> dict[str, float]:
    times = sorted(times)
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    med = statistics.median(times)
    return {
        "batch": batch,
        "runs": len(times),
        "median_ms": med * 1000,
        "p99_ms": p99 * 1000,
        "patient_forecasts_per_s": batch / med,
    }


DEFAULT = "fast_lean"


def interleaved(cands: dict, warmup: int = 2) -> dict[str, list[float]]:
    """Time every candidate ``name -> (fn, reps)``, spreading each one's runs evenly over one
    shared sequence of rounds, so slow drifts in machine load hit all of them alike.

    Each timed call directly follows an untimed call of the same candidate: a service calls
    one path over and over, so its caches hold that path's graph and weights. Timed straight
    after another candidate (four network variants and ``predict()`` take turns here), a call
    first pays to reload them: with the warm call the fast path's median at batch 64 fell by
    ~15 % and ``predict()``'s by ~8 % in our runs. Every candidate is treated alike.
    """
    for fn, _ in cands.values():
        for _ in range(warmup):
            fn()
    rounds = max(r for _, r in cands.values())
    times: dict[str, list[float]] = {name: [] for name in cands}
    for i in range(rounds):
        for name, (fn, reps) in cands.items():
            if (i * reps) // rounds != ((i + 1) * reps) // rounds:
                fn()  # warm: see the docstring
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return times


def parse_setting(text: str) -> tuple[int, int]:
    """``"2"`` -> 2 torch threads, 1 worker; ``"1x2"`` -> 1 torch thread in each of 2 workers."""
    threads, _, workers = text.partition("x")
    return int(threads), int(workers or 1)


def run(path: Path, setting: str, sizes: list[int], quick: bool) -> dict:
    import numpy as np
    import onnxruntime
    import torch

    from models import dataset, fastpath, registry

    threads, workers = parse_setting(setting)
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    states = build_states(max(sizes))
    at = [(s.watermark_ms // 900_000) * 900_000 for s in states]
    runners = {
        DEFAULT: fastpath.Forecaster.load(path, threads=threads, workers=workers),
        "fast_torchscript": fastpath.Forecaster.load(
            path, backend="torchscript", threads=threads, workers=workers
        ),
        "fast_torch": fastpath.Forecaster.load(
            path, backend="torch", threads=threads, workers=workers
        ),
    }
    if (Path(path) / registry.ONNX).exists():
        runners["fast_onnx"] = fastpath.Forecaster.load(
            path, backend="onnx", threads=threads, workers=workers
        )
    else:
        # No shipped graph (training refuses one that differs from torch by more than 1e-4):
        # export one here to compare the runtime; its agreement is measured like the others'.
        onnx = fastpath.Forecaster.load(path, backend="torch", threads=threads, workers=workers)
        sample = fastpath.features_from_states(states[:16], onnx.spec, at[:16])
        graph = fastpath.export_onnx(onnx.model, onnx.spec, sample)
        onnx.runner = fastpath.OnnxRunner(graph, threads)
        runners["fast_onnx_exported"] = onnx
    fc = runners["fast_torch"]
    spec = fc.spec
    default = runners[DEFAULT]
    names = (*runners, "network_and_risk_only", "predict", "predict_only")
    results: dict[str, dict] = {name: {} for name in names}
    stages: dict[str, dict] = {}
    agreement = {}
    anchored = {}
    trainer = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False}
    for b in sizes:
        reps = (5 if quick else 20) if b >= 1000 else (30 if quick else 200)
        p_reps = max(3, reps // 10)
        st, ts = states[:b], at[:b]
        inputs = fastpath.features_from_states(st, spec, ts)
        batch = default.run(inputs)
        ids = [s.patient_id for s in st]
        win = _windows(inputs, spec)

        def via_predict(w=win, n=b, kw=trainer) -> np.ndarray:
            tsd = dataset.timeseries_dataset(dataset.to_frame(w, spec), spec)
            out = fc.model.predict(
                tsd, mode="quantiles", batch_size=max(n, 1), trainer_kwargs=dict(kw)
            )  # fresh dict: predict mutates it
            return torch.stack(list(out), dim=1).numpy()

        tsd = dataset.timeseries_dataset(dataset.to_frame(win, spec), spec)
        cands = {
            name: (lambda r=runner, s=st, t=ts: r.forecast_states(s, t), reps)
            for name, runner in runners.items()
        }
        cands.update(
            {
                "network_and_risk_only": (lambda i_=inputs: default.run(i_), reps),
                "stage:features_from_states": (
                    lambda s_=st, t_=ts: fastpath.features_from_states(s_, spec, t_),
                    reps,
                ),
                "stage:records_and_explanations": (
                    lambda b_=batch, i_=ids: default.results(b_, i_),
                    reps,
                ),
                "predict": (via_predict, p_reps),
                "predict_only": (
                    lambda t=tsd, n=b, kw=trainer: fc.model.predict(
                        t, mode="quantiles", batch_size=n, trainer_kwargs=dict(kw)
                    ),
                    p_reps,
                ),
            }
        )
        times = interleaved(cands)
        for name in names:
            results[name][str(b)] = summary(times[name], b)
        stages[str(b)] = {
            "features_from_states": summary(times["stage:features_from_states"], b)["median_ms"],
            "network_and_risk": results["network_and_risk_only"][str(b)]["median_ms"],
            "records_and_explanations": summary(times["stage:records_and_explanations"], b)[
                "median_ms"
            ],
        }
        ref = via_predict()
        order = np.array([int(g) for g in tsd.decoded_index["window"]])
        back = np.empty_like(ref)
        back[order] = ref
        for name, runner in runners.items():
            # like with like: the network's output against predict()'s; the served forecast
            # is that output anchored, so predict()'s anchored the same way must equal it too
            q = runner.raw(inputs)[0]
            agreement[f"{name}@{b}"] = float(np.abs(q - back).max())
            served = runner.run(inputs).quantiles
            anchored_ref = runner.calibrate(back, inputs.last_obs)
            anchored[f"{name}@{b}"] = float(np.abs(served - anchored_ref).max())

    def rate(name: str, b: int) -> float | None:
        return results[name].get(str(b), {}).get("patient_forecasts_per_s")

    def speedup(name: str, b: int) -> float | None:
        fast, slow = rate(name, b), rate("predict", b)
        return fast / slow if fast and slow else None

    s64 = speedup(DEFAULT, 64)
    p99 = results[DEFAULT].get("64", {}).get("p99_ms")
    return {
        "model": str(path),
        "spec_hash": spec.hash(),
        "setting": setting,
        "threads": threads,
        "workers": workers,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "default_backend": default.backend,
        "backends": {name: r.backend for name, r in runners.items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": os.getloadavg()[0],
        },
        "results": results,
        "stage_median_ms": stages,
        "speedup_vs_predict": {name: {str(b): speedup(name, b) for b in sizes} for name in runners},
        "max_abs_diff_vs_predict": agreement,
        "max_abs_diff_anchored_vs_predict_anchored": anchored,
        "targets": {
            "measured_on": DEFAULT,
            "speedup_vs_predict_at_64": s64,
            "speedup_target_10x_met": bool(s64 and s64 >= 10),
            "speedup_aim_20x_met": bool(s64 and s64 >= 20),
            "rate_at_1000": rate(DEFAULT, 1000),
            "rate_at_1000_network_and_risk_only": rate("network_and_risk_only", 1000),
            "rate_target_5000_met": bool((rate(DEFAULT, 1000) or 0) >= 5000),
            "p99_ms_at_64": p99,
            "p99_target_200ms_met": bool(p99 is not None and p99 <= 200),
            # the backends a Forecaster can load: an unverified export is reported, not judged
            "agreement_1e-4_met": all(
                v <= 1e-4 for k, v in agreement.items() if not k.startswith("fast_onnx_exported")
            ),
            "max_abs_diff_default": max(v for k, v in agreement.items() if k.startswith(DEFAULT)),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("var/bench/forecast.json"))
    # The issue measures on 2 cores: one torch thread and two, each in its own process.
    ap.add_argument(
        "--threads",
        default="1,2,1x2",
        help="settings: T (torch threads) or TxW (T threads in each of W workers); a list runs "
        "one process each",
    )
    ap.add_argument("--batches", default="1,64,1000")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()

    from models import registry

    path = args.model or registry.DEFAULT_DIR
    sizes = [int(b) for b in args.batches.split(",")]
    settings = args.threads.split(",")
    if len(settings) == 1:
        report = run(path, settings[0], sizes, args.quick)
    else:
        report = _per_setting(args, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(_digest(report), indent=2))


def _per_setting(args: argparse.Namespace, settings: list[str]) -> dict:
    """One child process per thread setting, one after the other; the headline is the setting
    that meets the most targets (then the faster at batch 64); every setting's report is kept."""
    import subprocess
    import sys
    import tempfile

    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for t in settings:
            out = Path(tmp) / f"t{t}.json"
            cmd = [
                sys.executable,
                __file__,
                "--threads",
                str(t),
                "--out",
                str(out),
                "--batches",
                args.batches,
                *(["--quick"] if args.quick else []),
                *(["--model", str(args.model)] if args.model else []),
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            reports[str(t)] = json.loads(out.read_text())

    def merit(t: str) -> tuple[int, float]:
        got = reports[t]["targets"]
        met = sum(bool(v) for k, v in got.items() if k.endswith("_met"))
        return met, got["speedup_vs_predict_at_64"] or 0.0

    best = max(reports, key=merit)
    head = reports[best]
    # predict() at its fastest in any setting (it has no workers), against the headline
    at_64 = [r["results"]["predict"].get("64", {}).get("median_ms") for r in reports.values()]
    fastest = min(at_64) if at_64 and None not in at_64 else None
    ours = head["results"][DEFAULT].get("64", {}).get("median_ms")
    conservative = fastest / ours if fastest and ours else None
    targets = {
        **head["targets"],
        "fastest_predict_ms_at_64": fastest,
        "speedup_vs_fastest_predict_at_64": conservative,
        "speedup_target_10x_met": bool(conservative and conservative >= 10),
        "speedup_aim_20x_met": bool(conservative and conservative >= 20),
    }
    return {
        **head,
        "targets": targets,
        "headline_setting": best,
        "by_threads": {
            t: {
                k: r[k]
                for k in ("results", "stage_median_ms", "speedup_vs_predict", "targets", "machine")
            }
            for t, r in reports.items()
        },
    }


def _digest(report: dict) -> dict:
    per_s = {
        k: {b: round(v["patient_forecasts_per_s"]) for b, v in r.items()}
        for k, r in report["results"].items()
    }
    out = {"threads": report["threads"], "results": per_s, **report["targets"]}
    if "by_threads" in report:
        out["by_threads"] = {t: r["targets"] for t, r in report["by_threads"].items()}
    return out


def _windows(inputs, spec):
    """Windows carrying these inputs (targets unknown: placeholders) for predict()."""
    import numpy as np

    from models import dataset

    n, d, t = inputs.n, spec.decoder_steps, len(spec.targets)
    ti = [spec.unknown_reals.index(x) for x in spec.targets]
    center = np.array([spec.center_scale(x) for x in spec.targets], np.float32)
    enc_targets = inputs.enc_unknown[..., ti] * center[:, 1] + center[:, 0]
    return dataset.Windows(
        patient_ids=("bench",),
        patient=np.zeros(n, np.int64),
        origin_ms=inputs.origin_ms,
        enc_unknown=inputs.enc_unknown,
        enc_targets=enc_targets.astype(np.float32),
        known=inputs.known,
        statics=inputs.statics,
        last_obs=inputs.last_obs,
        dec_targets=np.full((n, d, t), np.nan, np.float32),
        news2_now=inputs.news2_now,
        event_ms=np.zeros(n, np.int64),
        data_end_ms=np.zeros(n, np.int64),
        labels=np.zeros((n, len(spec.risk_horizons_h)), np.float32),
    )


if __name__ == "__main__":
    main()
