"""The per-stream hash chain of migration 0011: computed by the database inside the appending
statement, equal to an independent implementation written here from docs/INTEGRITY.md (not by
calling events/chain.py), stable for equal jsonb values, and given to existing rows by the migration."""

from __future__ import annotations

import hashlib
import struct

import asyncpg
import pytest

from events.chain import StoredRow, event_hash
from events.sealing import rechain_stream
from service import migrations
from tests.support.generated_log import write_log
from tests.support.reads import business_id

ZERO = bytes(32)
COLUMNS = ("event_id, stream_id, stream_version, event_type, schema_version, business_id, idempotency_key, "
           "request_fingerprint, payload::text AS payload, metadata::text AS metadata, recorded_at, hash")


def independent_hash(prev: bytes, row: asyncpg.Record) -> bytes:
    """From the spec: 'intake-event-v1', then each field as a 4-byte big-endian length and its bytes."""
    def field(value: bytes | None) -> bytes:
        return b"\xff\xff\xff\xff" if value is None else struct.pack(">I", len(value)) + value
    epoch_us = int(row["recorded_at"].timestamp()) * 1_000_000 + row["recorded_at"].microsecond
    texts = [str(row["event_id"]), row["stream_id"], str(row["stream_version"]), row["event_type"],
             str(row["schema_version"]), str(row["business_id"])]
    body = b"".join(field(t.encode()) for t in texts)
    key = row["idempotency_key"]
    body += field(key and key.encode()) + field(row["request_fingerprint"])
    body += field(row["payload"].encode()) + field(row["metadata"].encode()) + field(str(epoch_us).encode())
    return hashlib.sha256(prev + b"intake-event-v1" + body).digest()


async def insert(db: asyncpg.Connection, stream: str, version: int, payload: str, key: str | None = None) -> None:
    await db.execute("INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id, "
                     "idempotency_key, request_fingerprint, payload, metadata) VALUES (gen_random_uuid(), $1, $2, "
                     "'consult.submitted', 1, 7, $3, $4, $5::jsonb, '{\"actor\": \"t\"}')",
                     stream, version, key, None if key is None else b"\x01\x02", payload)


async def test_a_stream_s_hashes_equal_an_independent_implementation_of_the_spec(db):
    await insert(db, "s1", 1, '{"b": [1, 2.50, "é"], "a": {"y": null, "x": true}}', key="idem-1")
    await insert(db, "s1", 2, '{"note": "second"}')
    rows = await db.fetch(f"SELECT {COLUMNS} FROM events WHERE stream_id = 's1' ORDER BY stream_version")
    first = independent_hash(ZERO, rows[0])
    assert bytes(rows[0]["hash"]) == first
    assert bytes(rows[1]["hash"]) == independent_hash(first, rows[1])


async def test_equal_jsonb_values_have_one_text_whatever_their_key_order_and_spacing(db):
    await insert(db, "a", 1, '{"zeta": 1, "alpha": {"b": 2, "a": [1,2]}, "mid": "x"}')
    await insert(db, "b", 1, '{ "mid":"x","alpha":{"a":[1, 2],"b":2},  "zeta":1 }')
    texts = await db.fetch("SELECT payload::text AS payload FROM events WHERE stream_id IN ('a', 'b')")
    assert texts[0]["payload"] == texts[1]["payload"] == '{"mid": "x", "zeta": 1, "alpha": {"a": [1, 2], "b": 2}}'


async def test_one_statement_appending_several_versions_of_a_stream_chains_them_in_order(db, tenant):
    written = await write_log(db, business_id=await business_id(db, tenant), events=300)
    rows = await db.fetch(f"SELECT {COLUMNS} FROM events ORDER BY stream_id, stream_version")
    heads: dict[str, bytes] = {}
    for row in rows:
        expected = event_hash(heads.get(row["stream_id"], ZERO), _stored(row))
        assert bytes(row["hash"]) == expected, (row["stream_id"], row["stream_version"])
        heads[row["stream_id"]] = expected
    assert len(rows) == written and len(heads) < written  # streams have several events each


def _stored(row: asyncpg.Record) -> StoredRow:
    fingerprint = row["request_fingerprint"]
    return StoredRow(row["event_id"], row["stream_id"], row["stream_version"], row["event_type"],
                     row["schema_version"], row["business_id"], row["idempotency_key"],
                     fingerprint and bytes(fingerprint), row["payload"], row["metadata"], row["recorded_at"])


async def test_the_migration_chains_the_events_that_were_there_before_it(postgres):
    name = "chain_backfill"
    admin = await asyncpg.connect(postgres.url())
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(postgres.url(name))
    try:
        everything = migrations.load_migrations()
        await migrations.migrate(conn, [m for m in everything if m.version < 11])
        await conn.execute("INSERT INTO businesses (slug, name) VALUES ('old', 'Old')")
        await write_log(conn, business_id=1, events=120)
        await migrations.migrate(conn, everything)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM events ORDER BY stream_id, stream_version")
        heads: dict[str, bytes] = {}
        for row in rows:
            heads[row["stream_id"]] = independent_hash(heads.get(row["stream_id"], ZERO), row)
            assert bytes(row["hash"]) == heads[row["stream_id"]]
        assert len(rows) == 120
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE events SET hash = hash")  # the trigger is back on
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()


async def test_rechain_after_an_allowed_rewrite_makes_the_stream_s_chain_whole_again(db):
    await insert(db, "r", 1, '{"n": 1}')
    await insert(db, "r", 2, '{"n": 2}')
    await insert(db, "r", 3, '{"n": 3}')
    async with db.transaction():  # as the re-encryption command would: owner, trigger off in its transaction
        await db.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        await db.execute("""UPDATE events SET payload = '{"sealed": "ciphertext"}' WHERE stream_id = 'r'
                            AND stream_version = 2""")
        changed = await rechain_stream(db, "r")
        await db.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete")
    rows = await db.fetch(f"SELECT {COLUMNS} FROM events WHERE stream_id = 'r' ORDER BY stream_version")
    heads = [ZERO]
    for row in rows:
        heads.append(independent_hash(heads[-1], row))
        assert bytes(row["hash"]) == heads[-1]
    assert changed == 2  # the rewritten event and the one chained after it
    assert await rechain_stream(db, "r") == 0


async def test_writers_of_different_streams_do_not_wait_for_each_other(db, database_url):
    other = await asyncpg.connect(database_url)
    try:
        async with db.transaction():
            await insert(db, "held", 1, '{"n": 1}')  # uncommitted while the other stream appends
            await other.execute("SET lock_timeout = '2s'")
            await insert(other, "free", 1, '{"n": 1}')
            assert await other.fetchval("SELECT count(*) FROM events WHERE stream_id = 'free'") == 1
    finally:
        await other.close()
