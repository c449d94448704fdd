"""Upcasters: earlier versions of an event, read as the current version. Pure.

The log keeps every event as it was written, with the schema version it was written
with, forever. Reading is where versions meet: a row of `(event_type, n)` decodes with
its own (decode-only) class, then goes through the registered step n → n+1, n+1 → n+2,
… until no step is registered, which is the current version. Everything that reads the
log (the domain's fold, the projections, rebuild, replay, the audit API) reads through
events/store.py's `decode_record`, so each sees only current shapes and none needs to
know about old ones.

A new version of an event type adds: its new class (the tag's version bumped) in
events/types.py, the old class moved to DECODE_ONLY_CLASSES, and one step here from the
old version to the new. Steps are never edited or removed afterwards: the log still
holds events that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from events.types import ConsultSubmitted, ConsultSubmittedV1, Event

Upcaster = Callable[[Event], Event]


def _consult_submitted_v1_to_v2(event: Event) -> Event:
    # Consent was not asked for before version 2: the patient accepted no document we know of.
    if not isinstance(event, ConsultSubmittedV1):
        raise TypeError(f"consult.submitted.v1 cannot be read from {type(event).__name__}")
    return ConsultSubmitted(**msgspec.structs.asdict(event), consent=None)


# (event_type, the version a step reads) → the step to the next version.
UPCASTERS: Mapping[tuple[str, int], Upcaster] = {
    ("consult.submitted", 1): _consult_submitted_v1_to_v2,
}


def upcast(event_type: str, schema_version: int, event: Event,
           steps: Mapping[tuple[str, int], Upcaster] = UPCASTERS) -> Event:
    """The event, recorded at `schema_version`, as the current version of its type."""
    version = schema_version
    while (step := steps.get((event_type, version))) is not None:
        event, version = step(event), version + 1
    return event
