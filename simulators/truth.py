"""Ground truth per episode and per patient, from a simulated course.

The outcome of an episode: ``died`` if the patient died after its onset, else ``critical`` if it
reached the critical event, ``recovered`` if its burden resolved, ``ongoing`` otherwise.
Patients without an episode are ``stable``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulators.conditions import CONDITION_ORDER, Episodes, Outcome
from simulators.physiology import Latent

OUTCOME_ORDER: tuple[Outcome, ...] = tuple(Outcome)


def episode_outcomes(episodes: Episodes, latent: Latent) -> npt.NDArray[np.int64]:
    """Index into ``OUTCOME_ORDER`` for every episode (started or not)."""
    death = latent.death_min[episodes.row]
    died = np.isfinite(death) & (death >= episodes.onset_min)
    out = np.full(episodes.n, OUTCOME_ORDER.index(Outcome.ONGOING), np.int64)
    out[np.isfinite(latent.resolved_min)] = OUTCOME_ORDER.index(Outcome.RECOVERED)
    out[np.isfinite(latent.critical_min)] = OUTCOME_ORDER.index(Outcome.CRITICAL)
    out[died] = OUTCOME_ORDER.index(Outcome.DIED)
    return out


def patient_outcomes(n: int, episodes: Episodes, latent: Latent) -> npt.NDArray[np.int64]:
    """Worst outcome per patient row (``stable`` without a started episode)."""
    severity = [Outcome.STABLE, Outcome.RECOVERED, Outcome.ONGOING, Outcome.CRITICAL, Outcome.DIED]
    rank = np.array([severity.index(o) for o in OUTCOME_ORDER])
    worst = np.zeros(n, np.int64)
    started = np.nonzero(latent.started)[0]
    if started.size:
        np.maximum.at(
            worst, episodes.row[started], rank[episode_outcomes(episodes, latent)[started]]
        )
    back = np.array([OUTCOME_ORDER.index(o) for o in severity])
    return np.asarray(back[worst])


def condition_names(episodes: Episodes) -> list[str]:
    return [CONDITION_ORDER[int(c)].value for c in episodes.condition]
