"""Each condition's signature, in aggregate over enriched cohorts."""

from __future__ import annotations

import numpy as np
from simhelpers import clean_series, news2_at

from simulators import ChunkResult, SimulationConfig, simulate
from simulators.conditions import CONDITION_CODE, Condition
from simulators.ehr import DIAGNOSES, EhrKind
from twin.signals import Signal


def _mean(ch: ChunkResult, row: int, sig: Signal, a: float, b: float) -> float:
    t, v = clean_series(ch, sig, row)
    w = (t >= a) & (t < b)
    return float(v[w].mean()) if w.any() else np.nan


def _episodes(chunks: list[ChunkResult], cond: Condition):  # type: ignore[no-untyped-def]
    for ch in chunks:
        sel = np.nonzero(ch.latent.started & (ch.episodes.condition == CONDITION_CODE[cond]))[0]
        for e in sel:
            yield ch, e


def test_news2_rises_before_the_septic_critical_event_and_stays_flat_when_stable(
    septic: list[ChunkResult],
) -> None:
    before: dict[int, list[int]] = {24: [], 12: [], 6: [], 1: []}
    for ch, e in _episodes(septic, Condition.SEPSIS):
        crit = ch.latent.critical_min[e]
        onset = ch.episodes.onset_min[e]
        if not np.isfinite(crit) or crit - onset < 12 * 60 or onset < 12 * 60:
            continue
        row = int(ch.episodes.row[e])
        for h in before:
            score = news2_at(ch, row, int(crit - 60 * h))
            if score is not None:
                before[h].append(score)
    assert len(before[1]) >= 5
    assert np.mean(before[1]) >= 7  # high band at the critical event
    assert np.mean(before[1]) > np.mean(before[6]) > np.mean(before[12])
    assert np.mean(before[1]) - np.mean(before[24]) >= 4
    stable: list[int] = []
    for ch in septic:
        sick = set(ch.episodes.row[ch.latent.started].tolist())
        for row in range(ch.cohort.n):
            if row in sick:
                continue
            scores = [news2_at(ch, row, m) for m in (12 * 60, 36 * 60, 60 * 60)]
            scores = [s for s in scores if s is not None]
            if len(scores) == 3:
                stable.append(scores[-1] - scores[0])
    assert len(stable) >= 20
    assert abs(np.mean(stable)) < 1.0


def test_sepsis_raises_lactate_and_wbc(septic: list[ChunkResult]) -> None:
    lac_critical, lac_milder, wbc_septic, wbc_stable = [], [], [], []
    for ch in septic:
        ehr = ch.ehr
        assert ehr is not None
        began = ch.latent.started
        critical = set(ch.episodes.row[began & np.isfinite(ch.latent.critical_min)].tolist())
        septic_rows = set(ch.episodes.row[began].tolist())
        apparent = {
            int(r): m
            for r, m in zip(ch.episodes.row[began], ch.latent.apparent_min[began], strict=True)
        }
        labs = ehr.kind == EhrKind.LAB
        for r, m, code, v in zip(
            ehr.row[labs], ehr.minute[labs], ehr.code[labs], ehr.value[labs], strict=True
        ):
            r = int(r)
            if code == 0:
                (lac_critical if r in critical else lac_milder).append(v)
            elif code == 1 and r not in septic_rows:
                wbc_stable.append(v)
            elif code == 1 and np.isfinite(apparent.get(r, np.nan)) and m >= apparent[r]:
                wbc_septic.append(v)
    assert len(lac_critical) >= 5
    assert len(lac_milder) >= 5
    assert np.median(lac_critical) > np.median(lac_milder) > 1.5
    assert np.median(lac_critical) > 3.0
    assert np.median(wbc_septic) > np.median(wbc_stable) + 3


def test_heart_failure_decompensates_over_days() -> None:
    cfg = SimulationConfig(
        patients=400, days=7, seed=13, home_fraction=1.0, risk={"hf_decompensation": 12.0}
    )
    chunks = list(simulate(cfg))
    d_rr, d_spo2, d_steps = [], [], []
    for ch, e in _episodes(chunks, Condition.HF_DECOMPENSATION):
        onset, rec = ch.episodes.onset_min[e], ch.latent.recognized_min[e]
        if not np.isfinite(rec) or onset < 1440:
            continue
        row = int(ch.episodes.row[e])

        d_rr.append(
            _mean(ch, row, Signal.RESPIRATORY_RATE, rec - 720, rec)
            - _mean(ch, row, Signal.RESPIRATORY_RATE, onset - 1440, onset)
        )
        d_spo2.append(
            _mean(ch, row, Signal.SPO2, rec - 720, rec)
            - _mean(ch, row, Signal.SPO2, onset - 1440, onset)
        )
        d_steps.append(
            _mean(ch, row, Signal.STEPS, rec - 1440, rec)
            - _mean(ch, row, Signal.STEPS, onset - 1440, onset)
        )
        assert rec - onset > 12 * 60  # days, not hours
    assert len(d_rr) >= 5
    assert np.nanmean(d_rr) > 2
    assert np.nanmean(d_spo2) < -1.5
    assert np.nanmean(d_steps) < 0


def test_copd_exacerbation_in_hypercapnic_patients_on_scale_2() -> None:
    cfg = SimulationConfig(
        patients=300, days=5, seed=17, home_fraction=1.0, risk={"copd_exacerbation": 10.0}
    )
    chunks = list(simulate(cfg))
    drops, hyper_baseline = [], []
    for ch, e in _episodes(chunks, Condition.COPD_EXACERBATION):
        row = int(ch.episodes.row[e])
        onset = ch.episodes.onset_min[e]
        peak_at = onset + int(np.argmax(ch.latent.burden[:, e])) * 5 - onset
        t, v = clean_series(ch, Signal.SPO2, row)
        pre, near = v[(t < onset) & (t > onset - 720)], v[np.abs(t - peak_at) < 120]
        if pre.size and near.size:
            drops.append(near.mean() - pre.mean())
        if ch.cohort.hypercapnic[row]:
            hyper_baseline.append(ch.cohort.spo2_0[row])
            ehr = ch.ehr
            assert ehr is not None
            mine = ehr.row == row
            assert (mine & (ehr.kind == EhrKind.OXYGEN_TARGET)).any()
            dx = mine & (ehr.kind == EhrKind.CONDITION)
            assert "J96.12" in {DIAGNOSES[int(c)].icd10 for c in ehr.code[dx]}
    assert len(drops) >= 5
    assert np.mean(drops) < -2
    assert hyper_baseline
    assert 87 <= np.mean(hyper_baseline) <= 93


def test_type1_hypoglycaemia_shows_on_the_cgm() -> None:
    cfg = SimulationConfig(
        patients=800, days=3, seed=19, home_fraction=1.0, risk={"hypoglycaemia": 2.0}
    )
    chunks = list(simulate(cfg))
    nadirs, baselines = [], []
    for ch, e in _episodes(chunks, Condition.HYPOGLYCAEMIA):
        row = int(ch.episodes.row[e])
        onset = ch.episodes.onset_min[e]
        t, v = clean_series(ch, Signal.GLUCOSE, row)
        w = (t >= onset) & (t < onset + 180)
        pre = (t < onset) & (t > onset - 180)
        if w.any() and pre.any():
            nadirs.append(v[w].min())
            baselines.append(np.median(v[pre]))
    assert len(nadirs) >= 10
    assert np.median(nadirs) < 80
    assert np.median(nadirs) < np.median(baselines) - 40
    assert np.mean(np.asarray(nadirs) < 70) > 0.4
