"""verify's scan of a binary COPY stream (events/log_scan.py) against rows hashed by events/chain.py's
field-by-field definition: the same hashes, however the stream is cut into pieces, and the same
first problem when a row is changed."""

from __future__ import annotations

import datetime as dt
import struct
import uuid

import pytest

from events.chain import ZERO_HASH, StoredRow, event_hash, micros
from events.log_scan import ChainScan, stream_key
from events.merkle import CompactRange, leaf_hash, tree_root
from events.seals import Seal

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = b"\xff\xff"
Y2K = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def field(value: bytes | None) -> bytes:
    return b"\xff\xff\xff\xff" if value is None else struct.pack(">i", len(value)) + value


def copy_row(position: int, row: StoredRow, stored: bytes) -> bytes:
    """One row of integrity.sql's scan_events as PostgreSQL's binary COPY writes it."""
    fields = [stored, struct.pack(">q", position), struct.pack(">q", micros(row.recorded_at) - micros(Y2K)),
              struct.pack(">i", row.stream_version), struct.pack(">h", row.schema_version),
              struct.pack(">q", row.business_id), row.event_id.bytes, row.stream_id.encode(), row.event_type.encode(),
              None if row.idempotency_key is None else row.idempotency_key.encode(), row.request_fingerprint,
              row.payload.encode(), row.metadata.encode()]
    return struct.pack(">h", len(fields)) + b"".join(field(f) for f in fields)


def stored_row(stream: str, version: int, **changes: object) -> StoredRow:
    columns = dict(event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{stream}/{version}"), stream_id=stream,
                   stream_version=version, event_type="consult.submitted", schema_version=1 + version % 2,
                   business_id=7, idempotency_key=f"key-{version}" if version % 2 else None,
                   request_fingerprint=bytes([version]) * 32 if version % 2 else None,
                   payload='{"note": "héllo", "n": %d}' % version, metadata='{"actor": "a"}',
                   recorded_at=dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
                   + dt.timedelta(days=version * 9000))  # before 1970 and after 2000: negative and positive
    return StoredRow(**{**columns, **changes})  # type: ignore[arg-type]


def log() -> tuple[list[tuple[int, StoredRow]], list[bytes]]:
    """Two interleaved streams (one non-ASCII), in position order, and their hashes by the definition."""
    rows, hashes, heads = [], [], {}
    for position, (stream, version) in enumerate([("slot/a", 1), ("slot/ü", 1), ("slot/a", 2), ("slot/a", 3),
                                                  ("slot/ü", 2)], start=1):
        row = stored_row(stream, version)
        heads[stream] = event_hash(heads.get(stream, ZERO_HASH), row)
        rows.append((position, row))
        hashes.append(heads[stream])
    return rows, hashes


def stream_of(rows: list[tuple[int, StoredRow]], hashes: list[bytes]) -> bytes:
    return HEADER + b"".join(copy_row(p, row, h) for (p, row), h in zip(rows, hashes, strict=True)) + TRAILER


@pytest.mark.parametrize("piece", [1, 7, 100, 10_000])
def test_the_scan_hashes_as_the_definition_whatever_the_pieces(piece):
    rows, hashes = log()
    data = stream_of(rows, hashes)
    seal = Seal(1, 4, tree_root([leaf_hash(h) for h in hashes[:4]]), ZERO_HASH, Y2K, "k", b"")
    scan = ChainScan([seal], CompactRange())
    for start in range(0, len(data), piece):
        scan.feed(bytearray(data[start:start + piece]))
    assert scan.finish() is None
    assert scan.events == 5 and len(scan.heads) == 2
    assert scan.compact.root() == tree_root([leaf_hash(h) for h in hashes])


def test_an_edited_payload_is_named_by_its_position():
    rows, hashes = log()
    rows[2] = (3, stored_row("slot/a", 2, payload='{"note": "forged", "n": 2}'))
    scan = ChainScan([], CompactRange())
    scan.feed(stream_of(rows, hashes))
    assert scan.finish().line() == ("position 3: edited: stream slot/a version 2: its contents or its chain do not "
                                    "match its stored hash")


def test_a_missing_version_and_a_seal_over_more_events_than_the_log_are_reported():
    rows, hashes = log()
    scan = ChainScan([], CompactRange())
    scan.feed(stream_of(rows[:2] + rows[3:], hashes[:2] + hashes[3:]))
    assert scan.finish().line() == ("position 4: missing: stream slot/a version 3 follows version 1: the events "
                                    "between are not in the log")
    seal = Seal(1, 6, ZERO_HASH, ZERO_HASH, Y2K, "k", b"")
    whole = ChainScan([seal], CompactRange())
    whole.feed(stream_of(rows, hashes))
    assert whole.finish().line().startswith("seal 1: missing: it covers 6 events but the log has 5")


def test_a_stream_seeded_from_a_seal_chains_onto_the_stored_hash():
    rows, hashes = log()
    scan = ChainScan([], CompactRange(), {stream_key("slot/a"): (2, hashes[2])})
    scan.feed(stream_of(rows[3:4], hashes[3:4]))
    assert scan.finish() is None and scan.heads[stream_key("slot/a")] == (3, hashes[3])


def test_a_null_forced_into_a_fixed_column_is_an_edit():
    rows, hashes = log()
    data = bytearray(stream_of(rows[:1], hashes[:1]))
    timestamp = len(HEADER) + 2 + 36 + 12  # the recorded_at field's length word
    data[timestamp:timestamp + 12] = b"\xff\xff\xff\xff"
    scan = ChainScan([], CompactRange())
    scan.feed(bytes(data))
    assert scan.finish().line().startswith("position 1: edited: a column the chain covers is NULL")
