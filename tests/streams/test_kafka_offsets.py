"""The worker's offset frontier: gaps in what faust delivers are caught before anything is
applied, and the offsets committed to the broker never pass a record the twins lack."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from faust.types import TP

from streams.kafka_offsets import OffsetFrontier, OffsetGap

W = "p.wearable"
F = "p.fhir"


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    generation_id: int = 1


@dataclass
class Ev:
    message: Message


def evs(topic: str, partition: int, offsets: list[int], gen: int = 1) -> list[Ev]:
    return [Ev(Message(topic, partition, o, gen)) for o in offsets]


def frontier() -> OffsetFrontier:
    return OffsetFrontier(frozenset({W, F}))


def test_contiguous_batches_advance_and_unlock_commits() -> None:
    fr = frontier()
    batch = evs(W, 0, [5, 6, 7]) + evs(F, 0, [0])
    assert fr.unknown(batch) == {TP(W, 0), TP(F, 0)}
    moved = fr.advance(batch, {TP(W, 0): 5, TP(F, 0): 0})
    # Nothing may be committed until the batch is adopted (its twins are durable).
    assert fr.cap({TP(W, 0): 8}, 1) == {}
    fr.adopt(moved)
    assert fr.unknown(evs(W, 0, [8])) == set()
    assert fr.cap({TP(W, 0): 8, TP(F, 0): 1}, 1) == {TP(W, 0): 8, TP(F, 0): 1}
    assert fr.next_offset(TP(W, 0)) == 8


def test_a_gap_mid_stream_is_refused_before_anything_moves() -> None:
    fr = frontier()
    fr.adopt(fr.advance(evs(W, 3, [734, 735]), {TP(W, 3): 734}))
    # Seen after a kill -9 and restart: 880..906 never reached the agent, 907 did.
    with pytest.raises(OffsetGap, match=r"737\.\.906"):
        fr.advance(evs(W, 3, [736]) + evs(W, 3, [907]), {})
    assert fr.next_offset(TP(W, 3)) == 736  # unchanged: the batch is not applied


def test_a_gap_at_the_start_of_a_generation_is_refused() -> None:
    fr = frontier()
    with pytest.raises(OffsetGap):
        fr.advance(evs(W, 0, [12]), {TP(W, 0): 10})


def test_redeliveries_below_the_frontier_are_accepted() -> None:
    """After faust's seek to the committed offset it re-delivers: the twins' replay guard skips
    those; the frontier neither moves back nor calls them a gap."""
    fr = frontier()
    fr.adopt(fr.advance(evs(W, 0, [0, 1, 2, 3]), {TP(W, 0): 0}))
    fr.adopt(fr.advance(evs(W, 0, [1, 2, 3, 4]), {}))
    assert fr.next_offset(TP(W, 0)) == 5


def test_commits_are_capped_at_the_frontier_and_by_generation() -> None:
    fr = frontier()
    fr.adopt(fr.advance(evs(W, 0, [0, 1]), {TP(W, 0): 0}))
    # faust acked (and wants to commit) records it skipped without delivering them.
    assert fr.cap({TP(W, 0): 40}, 1) == {TP(W, 0): 2}
    # A partition not seen yet this generation: nothing is committed for it.
    assert fr.cap({TP(W, 1): 40}, 1) == {}
    # After a rebalance the old generation's frontier no longer vouches for anything ...
    assert fr.cap({TP(W, 0): 40}, 2) == {}
    # ... and a new generation restarts from the committed offset it resumed from.
    assert fr.unknown(evs(W, 0, [2], gen=2)) == {TP(W, 0)}
    fr.adopt(fr.advance(evs(W, 0, [2, 3], gen=2), {TP(W, 0): 2}))
    assert fr.cap({TP(W, 0): 40}, 2) == {TP(W, 0): 4}


def test_other_topics_pass_through_uncapped() -> None:
    fr = frontier()
    assert fr.cap({TP("p.twin-state", 0): 9}, 1) == {TP("p.twin-state", 0): 9}
    moved = fr.advance(evs("p.twin-state", 0, [50]), {})
    assert moved == {}
