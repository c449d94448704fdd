"""Encoding events to and from the log's columns.

The payload keeps its tag (`"type": "consult.submitted.v1"`), so one tagged-union
decoder reads any row; `event_type` and `schema_version` repeat the tag as columns
for indexing and filtering.
"""

from __future__ import annotations

import msgspec

from events.types import EVENT_CLASSES, Event, EventPayload


class UnknownEventType(Exception):
    """The log holds an event type this code does not know."""


def split_tag(tag: str) -> tuple[str, int]:
    """`consult.submitted.v1` → (`consult.submitted`, 1)."""
    name, _, version = tag.rpartition(".v")
    return name, int(version)


def tag_of(cls: type[Event]) -> str:
    """The stable tag of an event class."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), cls
    return tag


KNOWN_TYPES: frozenset[tuple[str, int]] = frozenset(split_tag(tag_of(c)) for c in EVENT_CLASSES)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(EventPayload)


def type_and_version(event: Event) -> tuple[str, int]:
    """The (event_type, schema_version) columns for an event."""
    return split_tag(tag_of(type(event)))


def encode_payload(event: Event) -> bytes:
    """The payload column."""
    return _ENCODER.encode(event)


def decode_payload(event_type: str, schema_version: int, payload: str | bytes) -> Event:
    """The typed event for a row of the log."""
    if (event_type, schema_version) not in KNOWN_TYPES:
        raise UnknownEventType(f"{event_type}.v{schema_version}")
    return _DECODER.decode(payload)
