"""Patient data keys in the database: the start-up KEK check, forgetting a patient, KEK rotation
and the one-time encryption of events written before encryption (events/privacy.py has the why)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import msgspec

from events.errors import AppendConflict
from events.group_commit import Row, append_arguments
from events.privacy import DataKey, KeyEncryptionKeyError, KeyEncryptionKeys, Keyring, personal_fields, seal_fields
from events.sealing import rechain_stream
from events.sqlfiles import queries

REWRAP_BATCH = 500
_METADATA = msgspec.json.Encoder()
_ANY = msgspec.json.Decoder()


class SealsExist(Exception):
    """The log is sealed: its stored payloads are vouched for and are never rewritten."""


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What `forget` did: the keys it destroyed and the event that says so (None: nothing to
    do, the patient had no live key left)."""

    key_ids: tuple[uuid.UUID, ...]
    position: int | None


async def check_keks(conn: asyncpg.Connection, keks: KeyEncryptionKeys) -> None:
    """Refuse a KEK configuration that lacks a KEK this database's keys are wrapped by (a
    missing or wrong key); else record the current KEK as in use."""
    sql = queries("keys")
    unknown = [r["kek_id"] for r in await conn.fetch(sql["keks_in_use"]) if r["kek_id"] not in keks.ids]
    if unknown:
        raise KeyEncryptionKeyError(
            f"patient data keys in this database are wrapped by key-encryption key {', '.join(unknown)}, "
            f"which is not configured (configured: {', '.join(sorted(keks.ids))}); wrong INTAKE_KEK_FILE?")
    await conn.execute(sql["register_kek"], keks.current_id)


async def forget(conn: asyncpg.Connection, business_id: int, patient_id: uuid.UUID, stream_id: str,
                 event: Callable[[tuple[uuid.UUID, ...]], Row],
                 then: Callable[[asyncpg.Connection, Row, asyncpg.Record], Awaitable[None]]) -> Forgotten | None:
    """Destroy the patient's live data keys, append the row `event(key_ids)` makes (its stream
    version is set here) and run `then` with it and its inserted record, in one transaction.
    None: the patient never had a key (unknown, or only written before encryption)."""
    sql = queries("keys")
    async with conn.transaction():
        destroyed = tuple(r["key_id"] for r in await conn.fetch(sql["destroy_patient_keys"], business_id, patient_id))
        if not destroyed:
            return Forgotten((), None) if await conn.fetchval(sql["patient_had_keys"], business_id, patient_id) else None
        version = await conn.fetchval(sql["stream_version"], stream_id)
        row = dataclasses.replace(event(destroyed), stream_version=version + 1)
        inserted = [r for r in await conn.fetch(queries("events")["append_events"], *append_arguments([row]))
                    if r["event_id"] is not None]
        if not inserted:
            raise AppendConflict(AppendConflict.__doc__)  # another append took the version: retry
        await then(conn, row, inserted[0])
        return Forgotten(destroyed, inserted[0]["position"])


async def rotate_kek(conn: asyncpg.Connection, keks: KeyEncryptionKeys) -> tuple[int, list[str]]:
    """Rewrap every live data key not wrapped by the current KEK with it (events untouched);
    returns how many, and the KEKs no longer needed."""
    sql, rewrapped = queries("keys"), 0
    while True:
        async with conn.transaction():
            batch = await conn.fetch(sql["keys_to_rewrap"], keks.current_id, REWRAP_BATCH)
            if not batch:
                break
            wrapped = [keks.wrap(r["key_id"], keks.unwrap(r["key_id"], r["wrapped_key"], r["kek_id"])) for r in batch]
            await conn.execute(sql["rewrap_keys"], [r["key_id"] for r in batch], [w for w, _ in wrapped],
                               [k for _, k in wrapped])
            rewrapped += len(batch)
    retired = [r["kek_id"] for r in await conn.fetch(sql["retire_keks"], keks.current_id)]
    return rewrapped, retired


async def encrypt_existing(conn: asyncpg.Connection, keyring: Keyring, *, batch: int = REWRAP_BATCH,
                           report: Callable[[int], None] = lambda n: None) -> int:
    """Seal the personal fields of events written before encryption, in place (as the owner: the
    append-only trigger is lifted for each short batch transaction only). Refused once sealed."""
    sql, after, sealed = queries("keys"), 0, 0
    if await conn.fetchval(sql["seals_table"]) and await conn.fetchval(sql["any_seal"]):
        raise SealsExist(SealsExist.__doc__)
    while rows := await conn.fetch(sql["plaintext_events"], after, batch):
        async with conn.transaction():
            keys = await _live_keys(conn, keyring, {(r["business_id"], r["patient_id"]) for r in rows})
            sealed_payloads = [
                _METADATA.encode(seal_fields(payload, personal_fields(payload["type"]), r["event_id"],
                                             keys[(r["business_id"], r["patient_id"])])).decode()
                for r in rows for payload in (_ANY.decode(r["payload"]),)]
            await conn.execute(sql["allow_rewrite"])
            await conn.execute(sql["seal_payloads"], [r["position"] for r in rows], sealed_payloads)
            for stream_id in sorted({r["stream_id"] for r in rows}):  # the chain covers what is stored
                await rechain_stream(conn, stream_id)
            await conn.execute(sql["forbid_rewrite"])
        sealed, after = sealed + len(rows), rows[-1]["position"]
        report(sealed)
    return sealed


async def _live_keys(conn: asyncpg.Connection, keyring: Keyring,
                     patients: set[tuple[int, uuid.UUID]]) -> dict[tuple[int, uuid.UUID], DataKey]:
    """The live key of each patient, created where there is none yet."""
    sql = queries("keys")
    fresh = [keyring.new_key(business_id, patient_id) for business_id, patient_id in sorted(patients)]
    await conn.execute(sql["create_patient_keys"], [k.key_id for k in fresh], [k.business_id for k in fresh],
                       [k.patient_id for k in fresh], [k.wrapped for k in fresh], [k.kek_id for k in fresh])
    live = await conn.fetch(sql["live_keys_of"], [b for b, _ in patients], [p for _, p in patients])
    return {(r["business_id"], r["patient_id"]): DataKey(
        r["key_id"], r["business_id"], r["patient_id"], r["wrapped_key"], r["kek_id"],
        keyring.data_key(r["key_id"], r["wrapped_key"], r["kek_id"])) for r in live}
