"""Who runs under which arm: the paired design, or seeded stratified permuted-block allocation.

Paired (the in-silico design): every enrolled twin runs under every arm. The simulator splits
each twin's randomness by purpose, so the arms see common random numbers - the same person,
the same episodes, the same sensor noise - and differ only by what the arm did. Contrasts are
within-twin, which removes the between-patient variance a real trial has to pay for.

Randomised (the real-trial design): each twin gets one arm. Within each stratum (the
combination of the ``strata`` covariates, in twin order) arms are assigned in permuted blocks
of ``block_size`` holding each arm ``ratio`` times per ``sum(ratios)``; the permutation of a
stratum's blocks comes from its own generator, ``SeedSequence(seed, spawn_key=(ALLOCATION,
crc32(stratum)))``, so adding a stratum or a twin elsewhere never changes an allocation here.
A block left incomplete at the end of a stratum is cut short, so arms within a stratum differ
by less than one block.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulators.trials.spec import TrialSpec

ALLOCATION = 0x7A11_0C47  # spawn-key tag of allocation streams (patient keys are (index, stream))


def stratum_labels(population: pd.DataFrame, strata: Sequence[str]) -> list[str]:
    if not strata:
        return ["all"] * len(population)
    cols = [population[s].astype(str).to_numpy() for s in strata]
    return [
        "|".join(f"{s}={v[i]}" for s, v in zip(strata, cols, strict=True))
        for i in range(len(population))
    ]


def permuted_blocks(
    n: int, arms: Sequence[str], ratios: Sequence[int], block_size: int, rng: np.random.Generator
) -> list[str]:
    """``n`` assignments in permuted blocks (the last block cut short)."""
    unit = [a for a, r in zip(arms, ratios, strict=True) for _ in range(r)]
    block = unit * (block_size // len(unit))
    out: list[str] = []
    while len(out) < n:
        perm = rng.permutation(len(block))
        out.extend(block[i] for i in perm)
    return out[:n]


def allocate(spec: TrialSpec, population: pd.DataFrame) -> dict[str, npt.NDArray[np.int64]]:
    """Twin indices per arm (sorted). Depends only on the spec and the enrolled population."""
    twins = population["twin"].to_numpy(np.int64)
    arms = list(spec.arm_names)
    if spec.design.kind == "paired":
        return {a: twins.copy() for a in arms}
    ratios = [a.ratio for a in spec.arms]
    labels = stratum_labels(population, spec.design.strata)
    assigned = np.empty(len(twins), dtype=object)
    by_stratum: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_stratum.setdefault(label, []).append(i)
    for label in sorted(by_stratum):
        rows = by_stratum[label]
        seq = np.random.SeedSequence(spec.seed, spawn_key=(ALLOCATION, zlib.crc32(label.encode())))
        rng = np.random.Generator(np.random.PCG64(seq))
        assigned[rows] = permuted_blocks(len(rows), arms, ratios, spec.block_size(), rng)
    return {a: np.sort(twins[assigned == a]) for a in arms}
