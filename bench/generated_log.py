"""A large, valid log for the rebuild and replay benchmarks, COPYed straight into `events` (no API,
no outbox): what `intake projections rebuild` and `intake events replay` read.

The mix is the domain's own, with its real stream ids (service/domain.py): each (customer, product)
slot's stream holds submit, decide, submit, decide, submit (the last left pending); while a
submission is open, a second request for the slot is deduplicated onto it on that request's own
stream; a customer has PRODUCTS products, so a patient's details come from several slots' streams
and the latest submission by position must win. Slots interleave (WINDOW in progress at once), so a
stream's events are spread over the log as they are live. Rows are generated and COPYed chunk by
chunk: memory stays flat however many events are asked for (but for one data key per patient:
with a keyring, submissions are sealed as the service seals them, docs/PRIVACY.md).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator

import asyncpg
import msgspec

from events.codec import encode_payload, type_and_version
from events.privacy import Keyring
from events.types import ConsultDecided, ConsultSubmitted, Event, PatientDetails, SubmissionDeduplicated
from service.domain import patient_id_for, request_stream, slot_stream

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHUNK = 20_000  # events per COPY (and per transaction)
PRODUCTS = 3
WINDOW = 64  # slots in progress at once: how far apart a stream's events land in the log
DEDUPLICATED = 0.3  # share of open submissions that get a duplicate request
COLUMNS = ["event_id", "stream_id", "stream_version", "event_type", "schema_version", "business_id",
           "payload", "metadata"]
METADATA = msgspec.json.encode({"request_id": "gen", "actor": "generator", "correlation_id": "gen"}).decode()
Row = tuple[uuid.UUID, str, int, str, int, int, str, str]


class _Slot:
    """One (customer, product): its stream, version, open submission and what is left to do."""

    def __init__(self, business_id: int, customer: int, product: int, steps: list[str]) -> None:
        self.business_id, self.customer, self.product = business_id, f"cus_{customer}", f"prod_{product}"
        self.stream = slot_stream(business_id, self.customer, self.product)
        self.version = 0
        self.steps = steps
        self.open: tuple[ConsultSubmitted, uuid.UUID, int] | None = None  # (event, event id, position)

    def next_event(self, rng: random.Random, position: int, at: dt.datetime) -> tuple[str, int, Event, uuid.UUID]:
        """(stream, version, event, event id) of this slot's next step; `position` is where it lands."""
        step, event_id = self.steps.pop(0), uuid.uuid4()
        if step == "dedup":
            submitted, open_id, open_position = self.open  # type: ignore[misc]
            request = uuid.uuid4()
            event: Event = SubmissionDeduplicated(
                request_submission_id=request, open_submission_id=submitted.submission_id,
                consultation_id=submitted.consultation_id, open_event_id=open_id, open_position=open_position,
                received_at=at)  # fmt: skip
            return request_stream(request), 1, event, event_id
        self.version += 1
        if step == "submit":
            patient = PatientDetails(first_name=f"F{self.customer}", last_name=f"L{rng.randrange(1000)}",
                                     email=f"{self.customer}.{position}@example.com",
                                     date_of_birth=dt.date(1980, 1, 1) + dt.timedelta(days=rng.randrange(9000)))
            event = ConsultSubmitted(
                submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(),
                patient_id=patient_id_for(self.business_id, self.customer), customer_id=self.customer,
                product_id=self.product, patient=patient, chief_complaint="Persistent cough",
                submitted_at=at)  # fmt: skip
            self.open = (event, event_id, position)
        else:
            submitted = self.open[0]  # type: ignore[index]
            event = ConsultDecided(consultation_id=submitted.consultation_id,
                                   decision=rng.choice(("approved", "rejected")), reason="reviewed",
                                   clinician_id="clin_1", decided_at=at)  # fmt: skip
            self.open = None
        return self.stream, self.version, event, event_id


def _steps(rng: random.Random) -> list[str]:
    steps = []
    for n in range(5):  # submit, decide, submit, decide, submit
        steps.append("submit" if n % 2 == 0 else "decide")
        if n % 2 == 0 and rng.random() < DEDUPLICATED:
            steps.append("dedup")
    return steps


def rows(business_id: int, events: int, seed: int = 1, keys: _Keys | None = None) -> Iterator[Row]:
    """`events` rows, in log order; positions are assumed to start at 1 (an empty log). With `keys`,
    personal fields are sealed with each patient's data key, as the service writes them."""
    rng = random.Random(seed)
    active: list[_Slot] = []
    customer = written = 0
    while written < events:
        while len(active) < WINDOW:
            active += [_Slot(business_id, customer, p, _steps(rng)) for p in range(PRODUCTS)]
            customer += 1
        slot = active[index := rng.randrange(len(active))]
        at = START + dt.timedelta(seconds=written)
        stream, version, event, event_id = slot.next_event(rng, written + 1, at)
        if not slot.steps:
            active.pop(index)
        event_type, schema_version = type_and_version(event)
        payload = keys.seal(event, event_id) if keys and isinstance(event, ConsultSubmitted) else encode_payload(event)
        yield (event_id, stream, version, event_type, schema_version, business_id, payload.decode(), METADATA)
        written += 1


class _Keys:
    """One data key per patient, made as the service's first append would make it."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring, self.made = keyring, {}

    def seal(self, event: ConsultSubmitted, event_id: uuid.UUID) -> bytes:
        key = self.made.get(event.patient_id)
        if key is None:
            key = self.made[event.patient_id] = self.keyring.new_key(0, event.patient_id)
        return self.keyring.seal(event, event_id, key)

    async def store(self, conn: asyncpg.Connection, business_id: int) -> None:
        await conn.execute("INSERT INTO key_encryption_keys (kek_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           self.keyring.keks.current_id)
        await conn.copy_records_to_table("patient_keys", columns=["key_id", "business_id", "patient_id",
                                                                  "wrapped_key", "kek_id"],
                                         records=[(k.key_id, business_id, k.patient_id, k.wrapped, k.kek_id)
                                                  for k in self.made.values()])


async def write_log(conn: asyncpg.Connection, *, business_id: int, events: int, seed: int = 1,
                    keyring: Keyring | None = None) -> int:
    """Append `events` generated events for `business_id` to an empty log (sealed, with a keyring);
    returns how many."""
    chunk: list[Row] = []
    written = 0
    keys = _Keys(keyring) if keyring else None
    for row in rows(business_id, events, seed, keys):
        chunk.append(row)
        if len(chunk) == CHUNK:
            written += await _copy(conn, chunk)
            chunk = []
    written += await _copy(conn, chunk) if chunk else 0
    if keys:
        await keys.store(conn, business_id)
    return written


async def _copy(conn: asyncpg.Connection, chunk: list[Row]) -> int:
    # asyncpg's binary jsonb codec takes the JSON text: no staging table, no cast.
    await conn.copy_records_to_table("events", records=chunk, columns=COLUMNS)
    return len(chunk)
