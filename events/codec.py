"""Encoding events to and from the log's columns.

The payload keeps its tag (`"type": "consult.submitted.v2"`), so one tagged-union
decoder reads any row; `event_type` and `schema_version` repeat the tag as columns
for indexing and filtering. Only current versions (EVENT_CLASSES) are ever written;
earlier ones are read and upcast to the current version (events/upcasting.py).
"""

from __future__ import annotations

from typing import Union

import msgspec

from events.types import DECODE_ONLY_CLASSES, EVENT_CLASSES, Event
from events.upcasting import upcast


class UnknownEventType(Exception):
    """The log holds an event type this code does not know."""


class MismatchedTag(UnknownEventType):
    """The payload's tag disagrees with the row's event_type and schema_version columns."""


class NotWritable(Exception):
    """This is an earlier version of an event, kept only to read the log: only current versions are written."""


def split_tag(tag: str) -> tuple[str, int]:
    """`consult.submitted.v1` → (`consult.submitted`, 1)."""
    name, _, version = tag.rpartition(".v")
    return name, int(version)


def tag_of(cls: type[Event]) -> str:
    """The stable tag of an event class."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), cls
    return tag


_READABLE = (*EVENT_CLASSES, *DECODE_ONLY_CLASSES)
KNOWN_TYPES: frozenset[tuple[str, int]] = frozenset(split_tag(tag_of(c)) for c in _READABLE)
_WRITABLE = frozenset(EVENT_CLASSES)
# The shapes written today: a payload of one of these needs no upcasting to be read as it is.
CURRENT_TYPES: frozenset[tuple[str, int]] = frozenset(split_tag(tag_of(c)) for c in EVENT_CLASSES)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Union[_READABLE])  # type: ignore[valid-type]  # noqa: UP007  # built from a tuple


def type_and_version(event: Event) -> tuple[str, int]:
    """The (event_type, schema_version) columns for an event."""
    return split_tag(tag_of(type(event)))


def encode_payload(event: Event) -> bytes:
    """The payload column; refuses an earlier (decode-only) version."""
    check_writable(event)
    return _ENCODER.encode(event)


def check_writable(event: Event) -> None:
    """NotWritable unless the event is the current version of its type."""
    if type(event) not in _WRITABLE:
        raise NotWritable(f"{NotWritable.__doc__} ({tag_of(type(event))})")


def decode_payload(event_type: str, schema_version: int, payload: str | bytes) -> Event:
    """The typed event for a row of the log, as the current version of its type."""
    if (event_type, schema_version) not in KNOWN_TYPES:
        raise UnknownEventType(f"{event_type}.v{schema_version}")
    event = _DECODER.decode(payload)
    if type_and_version(event) != (event_type, schema_version):
        raise MismatchedTag(MismatchedTag.__doc__)
    return upcast(event_type, schema_version, event)
