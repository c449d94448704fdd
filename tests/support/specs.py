"""Given/when/then for a read model's pure `evolve`, in the manner of Emmett's Decider specs:

    spec(consultations.evolve).given(submission).when(decision).then(expected_row)

`given` folds its events from no row, `when` applies one more, `then` compares the
resulting row exactly (every field, by Struct equality).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from events.types import StoredEvent

Row = TypeVar("Row")
Evolve = Callable[[Row | None, StoredEvent], Row | None]


def fold(evolve: Evolve[Row], events: Iterable[StoredEvent], row: Row | None = None) -> Row | None:
    """The row after `events`, in the order given, starting from `row`."""
    for event in events:
        row = evolve(row, event)
    return row


@dataclasses.dataclass(frozen=True)
class Spec(Generic[Row]):
    """A read model under test: its `evolve`."""

    evolve: Evolve[Row]

    def given(self, *events: StoredEvent) -> Given[Row]:
        """The history already applied."""
        return Given(self.evolve, fold(self.evolve, events))


@dataclasses.dataclass(frozen=True)
class Given(Generic[Row]):
    """A row the history produced."""

    evolve: Evolve[Row]
    row: Row | None

    def when(self, event: StoredEvent) -> Then[Row]:
        """The event under test."""
        return Then(self.row, self.evolve(self.row, event))


@dataclasses.dataclass(frozen=True)
class Then(Generic[Row]):
    """The row before and after the event under test."""

    before: Row | None
    after: Row | None

    def then(self, expected: Row | None) -> None:
        """The event produced exactly `expected`."""
        assert self.after == expected, f"\nexpected {expected!r}\nbut got  {self.after!r}"

    def then_unchanged(self) -> None:
        """The event left the row as it was: the very same object, which the writers take to mean
        "nothing to write" (projections/writers.py compares rows by identity)."""
        assert self.after is self.before, f"\nexpected the row untouched: {self.before!r}\nbut got {self.after!r}"


def spec(evolve: Evolve[Row]) -> Spec[Row]:
    """Start a spec of one read model's `evolve`."""
    return Spec(evolve)
