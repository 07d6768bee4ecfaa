"""Seeded randomness: one root seed, one independent stream per patient and purpose.

Every random number the simulator draws comes from ``SeedSequence(root, spawn_key=(index,
stream))``, which is exactly ``SeedSequence(root).spawn(N)[index].spawn(k)[stream]``. A patient's
draws therefore depend only on the root seed and the patient's index, never on which other
patients are simulated with it: a shard reproduces the full run byte for byte. Purposes get
separate streams so that changing, say, the EHR model does not shift the noise of the vitals,
and intervention arms see common random numbers.

Gaussian noise on the minute grid is drawn as 16-bit indices into a 65,536-point table of
standard-normal quantiles (the midpoints of equal-probability bins). That is about three times
faster than numpy's ziggurat in float32 on the blocks we draw, and the price is a normal
truncated at +-4.2 sigma with 2^-16 probability resolution: harmless for physiological noise,
whose heavy tails come from the artifact model instead.
"""

from __future__ import annotations

import math
from enum import IntEnum
from functools import cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

TABLE_SIZE = 1 << 16


class Stream(IntEnum):
    """The purposes a patient's randomness is split into (the second spawn key)."""

    COHORT = 0  # demographics, comorbidities, baselines, device assignment
    CONDITIONS = 1  # acute episodes: onset, speed, severity, recognition
    NOISE = 2  # minute-grid physiological noise and delivery delays
    DEVICES = 3  # dropouts, artifacts, impossible readings, duplicates, cuff times
    EHR = 4  # lab timing, turnaround and assay noise, charting delays
    GLUCOSE = 5  # meal times and sizes, CGM noise (diabetic patients)
    CUFF = 6  # obs-round times, missed rounds, cuff variability, charting delays


def patient_rng(root: int, index: int, stream: Stream) -> np.random.Generator:
    """The generator for one patient's stream (independent of every other patient)."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(root, spawn_key=(index, stream)))
    )


@cache
def normal_table() -> npt.NDArray[np.float32]:
    """Standard-normal quantiles at the midpoints of 65,536 equal-probability bins."""
    inv = NormalDist().inv_cdf
    q = [inv((k + 0.5) / TABLE_SIZE) for k in range(TABLE_SIZE)]
    table = np.asarray(q, dtype=np.float32)
    table.setflags(write=False)
    return table


def normal_indices(rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.uint16]:
    """Uniform 16-bit indices; ``normal_table()[indices]`` are standard-normal draws.

    Four indices per raw 64-bit output (read little-endian, so every platform agrees): twice
    as fast as ``Generator.integers`` for the tens of thousands a patient needs.
    """
    size = math.prod(shape)
    raw = rng.bit_generator.random_raw(-(-size // 4))
    return raw.astype("<u8", copy=False).view("<u2")[:size].reshape(shape)


def lognormal_table(median: float, sigma: float, cap: float) -> npt.NDArray[np.float64]:
    """Quantiles of a log-normal with the given median and log-sd, capped at ``cap``.

    Indexed with the same 16-bit draws as ``normal_table``; used for delivery delays.
    """
    z = normal_table().astype(np.float64)
    return np.minimum(median * np.exp(sigma * z), cap)


def to_normal(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Map uniforms in [0, 1) to standard normals through the quantile table."""
    idx = np.minimum((u * TABLE_SIZE).astype(np.int64), TABLE_SIZE - 1)
    return normal_table()[idx].astype(np.float64)


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)))


def keyed_uniform(root: int, *keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Uniforms in [0, 1) that depend only on the root seed and the keys (counter-based).

    For draws attached to things whose number depends on the trajectory (a lab drawn when an
    episode is recognised): a sequential stream would shift every later draw when one item is
    added, so a policy's new intervention could change what was already delivered.
    """
    arrays = [np.asarray(k, dtype=np.int64).astype(np.uint64) for k in keys]
    shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    h = np.full(shape, np.uint64(root) & _M64, dtype=np.uint64)
    h = _splitmix(h)
    for a in arrays:
        h = _splitmix(h ^ a)
    return np.asarray((h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53)))
