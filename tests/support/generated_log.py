"""A large, valid log written straight into `events` with COPY (no API, no outbox): what a rebuild
reads. Each slot (customer, product) alternates submissions and decisions, some slots are left
pending, and a customer has several products, so a patient's details come from several streams."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import asyncpg
import msgspec

from events.codec import encode_payload, type_and_version
from events.types import ConsultDecided, ConsultSubmitted, Event, PatientDetails

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHUNK = 10_000  # events per COPY (and per transaction)
COLUMNS = ["event_id", "stream_id", "stream_version", "event_type", "schema_version", "business_id",
           "payload", "metadata"]


def _slot_events(rng: random.Random, customer: int, product: int, count: int) -> list[Event]:
    patient_id = uuid.uuid5(uuid.NAMESPACE_URL, f"patient/{customer}")
    events: list[Event] = []
    for n in range(count):
        at = START + dt.timedelta(minutes=n)
        if n % 2 == 0:
            consultation_id = uuid.uuid4()
            patient = PatientDetails(first_name=f"F{customer}", last_name=f"L{rng.randrange(1000)}",
                                     email=f"p{customer}.{n}@example.com", date_of_birth=dt.date(1980, 1, 1))
            events.append(ConsultSubmitted(submission_id=uuid.uuid4(), consultation_id=consultation_id,
                                           patient_id=patient_id, customer_id=f"cus_{customer}",
                                           product_id=f"prod_{product}", patient=patient,
                                           chief_complaint="cough", submitted_at=at))
        else:
            events.append(ConsultDecided(consultation_id=consultation_id, decision=rng.choice(("approved", "rejected")),
                                         reason="r", clinician_id="clin_1", decided_at=at))
    return events


def _rows(business_id: int, events: int, seed: int) -> list[tuple[object, ...]]:
    """`events` rows in an interleaved order, so streams are not contiguous in the log."""
    rng = random.Random(seed)
    per_slot, products = 5, 3  # submit, decide, submit, decide, submit: each slot ends pending
    slots = [(c, p) for c in range(events // (per_slot * products) + 1) for p in range(products)]
    pending = [[(f"gen-{business_id}-{c}-{p}", v + 1, e) for v, e in enumerate(_slot_events(rng, c, p, per_slot))]
               for c, p in slots]
    metadata = msgspec.json.encode({"request_id": "gen", "actor": "generator", "correlation_id": "gen"}).decode()
    rows: list[tuple[object, ...]] = []
    while len(rows) < events and pending:
        slot = rng.randrange(min(len(pending), 64))  # a window of slots in progress at once
        stream_id, version, event = pending[slot].pop(0)
        if not pending[slot]:
            pending.pop(slot)
        event_type, schema_version = type_and_version(event)
        rows.append((uuid.uuid4(), stream_id, version, event_type, schema_version, business_id,
                     encode_payload(event).decode(), metadata))
    return rows


async def write_log(conn: asyncpg.Connection, *, business_id: int, events: int, seed: int = 1) -> int:
    """Append `events` generated events for `business_id`; returns how many were written."""
    rows = _rows(business_id, events, seed)
    for start in range(0, len(rows), CHUNK):
        # COPY cannot cast text to jsonb by itself: go through a temp table.
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE generated (n serial, event_id uuid, stream_id text, "
                               "stream_version int, event_type text, schema_version int2, business_id bigint, "
                               "payload text, metadata text) ON COMMIT DROP")
            await conn.copy_records_to_table("generated", records=rows[start:start + CHUNK], columns=COLUMNS)
            await conn.execute(f"INSERT INTO events ({', '.join(COLUMNS)}) SELECT event_id, stream_id, stream_version, "
                               "event_type, schema_version, business_id, payload::jsonb, metadata::jsonb "
                               "FROM generated ORDER BY n")
    return len(rows)
