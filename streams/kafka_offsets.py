"""Which input offsets a worker has folded into its twins, and what it may commit.

faust 0.15 does not always hand an agent every record of a partition in order. Seen here after
a kill -9 and restart (about one run in eight): records fetched while a rebalance or the
post-recovery seek was in progress were dropped on the way to the stream, and the records after
them were delivered. Some such drops are acked by faust without reaching the agent (its stream
"skips" a message fetched while flow control was suspended, or from an older generation), so its
offset commits could move past records no twin ever saw. Either way the replay guard (a twin
skips input offsets at or below the last one it applied) then turns the missing records into
silent loss.

``OffsetFrontier`` keeps, per input partition and consumer generation, the next offset not yet
folded in. A batch is checked before anything is applied: a record past the frontier means some
were never delivered (``OffsetGap``; the worker exits without acking, and its restart resumes
from the committed offset). And the offsets faust commits to the broker are capped at the
frontier, so the committed offset never passes a record that is not in the twins; after any
crash or hand-over the next owner resumes at or before the first record it still needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streams.errors import StreamsError


class OffsetGap(StreamsError):
    """Records of a partition were skipped on their way to the agent."""


@dataclass(slots=True)
class OffsetFrontier:
    input_topics: frozenset[str]
    _next: dict[TP, tuple[int | None, int]] = field(
        default_factory=dict
    )  # tp -> (generation, offset)

    def unknown(self, events: Iterable[Any]) -> set[TP]:
        """Input partitions in ``events`` whose start offset this generation is not known yet."""
        out: set[TP] = set()
        for fev in events:
            msg = fev.message
            if msg.topic not in self.input_topics:
                continue
            tp = TP(msg.topic, msg.partition)
            known = self._next.get(tp)
            if known is None or known[0] != msg.generation_id:
                out.add(tp)
        return out

    def advance(
        self, events: Iterable[Any], starts: Mapping[TP, int]
    ) -> dict[TP, tuple[int | None, int]]:
        """The frontier after ``events``, not yet adopted (see ``adopt``); raises ``OffsetGap``.

        ``starts`` gives, for each partition ``unknown`` returned, the committed offset the
        consumer resumed from in this generation: the first record it must deliver.
        Records below the frontier are re-deliveries (the twins' replay guard skips them).
        """
        moved: dict[TP, tuple[int | None, int]] = {}
        for fev in events:
            msg = fev.message
            if msg.topic not in self.input_topics:
                continue
            tp = TP(msg.topic, msg.partition)
            gen = msg.generation_id
            cur = moved.get(tp) or self._next.get(tp)
            if cur is None or cur[0] != gen:
                cur = (gen, starts[tp])
            if msg.offset > cur[1]:
                raise OffsetGap(
                    f"{tp.topic}[{tp.partition}]: offsets {cur[1]}..{msg.offset - 1} never"
                    " reached the worker"
                )
            moved[tp] = (gen, max(cur[1], msg.offset + 1))
        return moved

    def adopt(self, moved: Mapping[TP, tuple[int | None, int]]) -> None:
        """Call once the batch's twins are durable: its offsets may now be committed."""
        self._next.update(moved)

    def next_offset(self, tp: TP) -> int | None:
        known = self._next.get(tp)
        return None if known is None else known[1]

    def cap(self, offsets: Mapping[TP, int], generation: int | None) -> dict[TP, int]:
        """The offsets that may be committed: input partitions no further than this
        generation's frontier (and not at all before it is known); other topics unchanged."""
        out: dict[TP, int] = {}
        for tp, offset in offsets.items():
            if tp.topic not in self.input_topics:
                out[tp] = offset
            elif (known := self._next.get(tp)) is not None and known[0] == generation:
                out[tp] = min(offset, known[1])
        return out
