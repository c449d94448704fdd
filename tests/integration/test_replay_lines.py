"""`intake events replay --format jsonl` builds its lines in PostgreSQL (sql/queries/replay.sql:
replay_lines) and only decrypts and upcasts in Python (events/jsonl.py). Each line must be byte for
byte what msgspec encodes for the event as the typed reader sees it (events/store.py, through
event_rows): awkward strings, times with and without microseconds, sealed, erased and older shapes,
across batches and a key cache smaller than the log's keys."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec
import pytest

import events.jsonl
from events.codec import CURRENT_TYPES, encode_payload
from events.jsonl import replay_jsonl
from events.privacy import Keyring, personal_fields, seal_fields
from events.replay import EventFilter, replay
from events.store import decode_record, payload_json
from events.types import Answer, ConsultDecided, ConsultSubmitted, Event, PatientDetails, TelehealthConsent
from tests.support.old_releases import v1_payload
from tests.support.reads import business_id
from tests.support.replay import replay as run_replay

# Quotes, backslashes, control characters, tab, newline, non-ASCII, a line separator, an emoji:
# what COPY's text format escapes and JSON escapes differently.
AWKWARD = 'we"ird\\ \x01\x1f\t\n é €\u2028😀 \\n'
_INSERT = ("INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id, "
           "payload, metadata, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9)")


class EventLine(msgspec.Struct, frozen=True):
    """One JSON line as the typed reader would encode it: the reference."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    recorded_at: dt.datetime
    data: Event | msgspec.Raw
    metadata: msgspec.Raw


def reference_line(record: asyncpg.Record, keyring: Keyring) -> bytes:
    """A row of event_rows as its JSON line: a payload in today's shape as stored (decrypted), an
    older one decoded through the upcasters."""
    if (record["event_type"], record["schema_version"]) in CURRENT_TYPES:
        payload = payload_json(record, keyring)
        data: object = msgspec.Raw(payload.encode() if isinstance(payload, str) else payload)
    else:
        data = decode_record(record, keyring).data
    return msgspec.json.encode(EventLine(
        record["position"], record["event_id"], record["stream_id"], record["stream_version"], record["event_type"],
        record["schema_version"], record["recorded_at"], data, msgspec.Raw(record["metadata"].encode()))) + b"\n"


async def reference(conn: asyncpg.Connection, keyring: Keyring) -> bytes:
    lines = replay(conn, EventFilter(), read=lambda record: reference_line(record, keyring))
    return b"".join([line async for line in lines])


def submitted(customer: str, n: int, patient_id: uuid.UUID) -> ConsultSubmitted:
    at = dt.datetime(2026, 3, 1, 14, 2, n, tzinfo=dt.UTC)
    return ConsultSubmitted(
        submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), patient_id=patient_id, customer_id=customer,
        product_id=f"prod {AWKWARD}", patient=PatientDetails(first_name=AWKWARD, last_name=f"L{n}",
                                                             email="a@example.com", date_of_birth=dt.date(1990, 1, n)),
        chief_complaint=AWKWARD, answers=(Answer(question_id="q1", answer=AWKWARD),), submitted_at=at,
        consent=TelehealthConsent(document_version="v 1", accepted_at=at) if n % 2 else None)


@pytest.fixture
async def awkward_log(db: asyncpg.Connection, tenant, keyring: Keyring) -> int:
    """Sealed submissions of three patients (one later forgotten), decisions, and version-1
    submissions in clear and sealed; odd strings and times throughout. Returns the event count."""
    business = await business_id(db, tenant)
    keys = [keyring.new_key(business, uuid.uuid4()) for _ in range(3)]
    await db.executemany("INSERT INTO patient_keys (key_id, business_id, patient_id, wrapped_key, kek_id) "
                         "VALUES ($1, $2, $3, $4, $5)",
                         [(k.key_id, business, k.patient_id, k.wrapped, k.kek_id) for k in keys])
    metadata = msgspec.json.encode({"request_id": AWKWARD, "actor": "cli:test", "correlation_id": "c"}).decode()
    rows = []
    for n in range(1, 13):
        key, event_id = keys[n % 3], uuid.uuid4()
        event = submitted(f"cus {n % 3}", n, key.patient_id)
        rows.append((event_id, f"{AWKWARD}{n}", 1, "consult.submitted", 2, keyring.seal(event, event_id, key).decode()))
        decided = ConsultDecided(consultation_id=event.consultation_id, decision="approved", reason=AWKWARD,
                                 clinician_id="c", decided_at=event.submitted_at)
        rows.append((uuid.uuid4(), f"{AWKWARD}{n}", 2, "consult.decided", 1, encode_payload(decided).decode()))
    old = msgspec.json.decode(v1_payload(submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(),
                                         patient_id=keys[0].patient_id))
    rows.append((uuid.uuid4(), "legacy in clear", 1, "consult.submitted", 1, msgspec.json.encode(old).decode()))
    sealed_id = uuid.uuid4()
    sealed = seal_fields(dict(old), personal_fields("consult.submitted.v1"), sealed_id, keys[1])
    rows.append((sealed_id, "legacy sealed", 1, "consult.submitted", 1, msgspec.json.encode(sealed).decode()))
    times = [dt.datetime(2026, 3, 1, 14, 2, tzinfo=dt.UTC) + dt.timedelta(microseconds=m)
             for m in (0, 450000, 1, 999999, 120)]
    await db.executemany(_INSERT, [(*row[:5], business, row[5], metadata, times[n % len(times)])
                                   for n, row in enumerate(rows)])
    await db.execute("UPDATE patient_keys SET wrapped_key = NULL, kek_id = NULL, destroyed_at = now() "
                     "WHERE key_id = $1", keys[2].key_id)
    return len(rows)


async def test_the_lines_are_what_msgspec_encodes_for_each_event(settings, db, keyring, awkward_log):
    done = await run_replay(settings.database_url, "--format", "jsonl")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    expected = await reference(db, keyring)
    assert done.stdout.encode() == expected
    lines = [msgspec.json.decode(line) for line in expected.splitlines()]
    assert len(lines) == awkward_log and sum(line["data"].get("chief_complaint") == "[erased]" for line in lines) == 4
    assert {line["stream_id"] for line in lines} >= {f"{AWKWARD}1", "legacy sealed"}


async def test_many_batches_and_a_small_key_cache_change_nothing(database_url, db, keyring, awkward_log, monkeypatch):
    monkeypatch.setattr(events.jsonl, "BATCH", 1)  # a batch per chunk of rows
    monkeypatch.setattr(events.jsonl, "KEY_CACHE", 1)  # every batch evicts
    out: list[bytes] = []
    await replay_jsonl(db, lambda: asyncpg.connect(database_url), EventFilter(), keyring, out.append)
    assert b"".join(out) == await reference(db, keyring)


async def test_an_envelope_naming_a_key_that_never_existed_fails_the_replay_clearly(settings, db, keyring, tenant):
    business, event_id = await business_id(db, tenant), uuid.uuid4()
    ghost = keyring.new_key(business, uuid.uuid4())  # never stored
    event = submitted("cus ghost", 1, ghost.patient_id)
    await db.execute(_INSERT, event_id, "ghost", 1, "consult.submitted", 2, business,
                     keyring.seal(event, event_id, ghost).decode(), "{}", dt.datetime.now(dt.UTC))
    done = await run_replay(settings.database_url, "--format", "jsonl")
    assert done.returncode == 1 and f"names data key {ghost.key_id}, which does not exist" in done.stderr
    assert "Traceback" not in done.stderr and AWKWARD not in done.stdout

