"""`intake projections rebuild` and `verify` against a real PostgreSQL: the rebuilt tables are what the
live projector made, down to names, grants, checkpoints and parked failures; verify names a row
changed behind the projector's back (by key and column, without its values); a rebuild is refused
while another holds the rebuild lock."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import asyncpg
import psutil
import pytest

from events.store import EventStore
from projections.projector import PARK_AFTER_ATTEMPTS, PROJECTIONS, Projector
from projections.rebuild import RebuildBusy, rebuild
from projections.verify import verify
from service import rebuild_command
from tests.support.event_log import append
from tests.support.fold import actual_tables
from tests.support.generated_log import write_log
from tests.support.old_releases import v1_payload
from tests.support.servers import ROOT

READ_TABLES = ["patients", "consultations", "approvals"]
LOG_EVENTS = 3_000


@pytest.fixture
async def pool(database_url):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


@pytest.fixture
async def projected(db, pool, keyring):
    """A generated log plus one poison event (a decision for a consultation never submitted), projected
    by the live projector until the poison is parked."""
    await write_log(db, business_id=1, events=LOG_EVENTS)
    await append(EventStore(pool, keyring), "poison-stream", 0)
    projector = Projector(pool, keyring)
    for _ in range(PARK_AFTER_ATTEMPTS):
        await projector.sweep()
    assert await db.fetchval("SELECT count(*) FROM projection_failures WHERE parked") == 2  # consultations, approvals


async def catalog(db: asyncpg.Connection) -> dict[str, object]:
    """Everything about the read tables a swap must keep: names and definitions (the shadow's indexes
    are built after its rows, from the live ones), logged and with default storage options (the
    shadow's autovacuum is off until the swap), grants, checkpoints, failures, floors' presence."""
    return {
        "indexes": sorted(tuple(r) for r in await db.fetch(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1)",
            READ_TABLES)),
        "constraints": sorted(tuple(r) for r in await db.fetch(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid::regclass::text = ANY($1)", READ_TABLES)),
        "tables": sorted(tuple(r) for r in await db.fetch(
            "SELECT relname, relpersistence, reloptions FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1)", READ_TABLES)),
        "grants": sorted(tuple(r) for r in await db.fetch(
            "SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = 'public' AND table_name = ANY($1)", READ_TABLES)),
        "checkpoints": sorted(tuple(r) for r in await db.fetch(
            # A row at version 0 and no row mean the same: nothing applied yet.
            "SELECT projection, stream_id, version, position FROM projection_checkpoints WHERE version > 0")),
        "failures": sorted(tuple(r) for r in await db.fetch(
            "SELECT projection, stream_id, version, position, parked FROM projection_failures")),
    }


async def oids(db: asyncpg.Connection) -> list[int]:
    return [await db.fetchval("SELECT $1::regclass::oid", table) for table in READ_TABLES]


async def test_a_rebuild_swaps_in_what_the_live_projector_made_with_the_same_names_grants_and_checkpoints(
        projected, settings, db, pool, keyring):
    tables, before, old_oids = await actual_tables(db), await catalog(db), await oids(db)

    rebuilt = await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring)

    assert rebuilt.projections == list(PROJECTIONS) and rebuilt.events == LOG_EVENTS + 1  # and the poison
    assert set(await oids(db)).isdisjoint(old_oids)  # new tables...
    assert await actual_tables(db) == tables  # ...with the same rows
    assert await catalog(db) == before  # the parked poison is parked again, at the same event
    assert await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'intake_rebuild'") == 0
    assert all(verdict.equal for verdict in await verify(db, list(PROJECTIONS), keyring))
    assert await Projector(pool, keyring).sweep() == 0  # the live projector finds nothing left to do


async def test_a_rebuild_of_one_projection_leaves_the_others_alone(projected, settings, db, keyring):
    old = await oids(db)
    await rebuild(settings.owner_database_url, ["approvals"], keyring)
    new = await oids(db)
    assert new[:2] == old[:2] and new[2] != old[2]
    assert all(verdict.equal for verdict in await verify(db, list(PROJECTIONS), keyring))


async def test_verify_names_the_rows_changed_behind_the_projector_s_back_by_key_and_column(projected, db, keyring):
    consultation = await db.fetchval("SELECT consultation_id FROM consultations WHERE status = 'pending' LIMIT 1")
    approval = await db.fetchval("SELECT consultation_id FROM approvals ORDER BY consultation_id LIMIT 1")
    await db.execute("UPDATE consultations SET status = 'approved', reason = 'forged' WHERE consultation_id = $1",
                     consultation)
    await db.execute("DELETE FROM approvals WHERE consultation_id = $1", approval)

    verdicts = {v.projection: v for v in await verify(db, list(PROJECTIONS), keyring)}

    assert verdicts["patients"].equal
    assert verdicts["consultations"].differing == 1
    [changed] = verdicts["consultations"].first
    assert changed.key == {"consultation_id": str(consultation)}
    assert (changed.problem, changed.columns) == ("columns differ", ["status", "reason"])
    [missing] = verdicts["approvals"].first
    assert (missing.key, missing.problem) == ({"consultation_id": str(approval)}, "missing in live")


def run_cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "OWNER_DATABASE_URL": settings.owner_database_url}
    return subprocess.run([sys.executable, "-m", "service.cli", "projections", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def test_the_verify_command_exits_1_naming_the_key_and_column_but_not_the_value(projected, settings, db):
    assert run_cli(settings, "verify").returncode == 0
    patient = await db.fetchrow("SELECT business_id, patient_id, email FROM patients LIMIT 1")
    await db.execute("UPDATE patients SET email = 'changed-behind-its-back@example.com' WHERE patient_id = $1",
                     patient["patient_id"])
    done = run_cli(settings, "verify", "patients")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"business_id=1 patient_id={patient['patient_id']}: columns differ: email" in done.stdout
    assert "example.com" not in done.stdout + done.stderr


async def test_a_second_rebuild_is_refused_while_another_holds_the_lock(projected, settings, db, keyring):
    holder = await asyncpg.connect(settings.owner_database_url)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock(7301001)")  # what a running rebuild holds
        with pytest.raises(RebuildBusy):
            await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring)
        done = run_cli(settings, "rebuild")
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == ["intake: error: another rebuild is running (it holds the "
                                                    "rebuild lock); wait for it to finish"]
    finally:
        await holder.close()
    assert await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'intake_rebuild'") == 0


async def test_a_version_1_submission_recorded_by_an_older_release_rebuilds_as_it_projected(
        projected, settings, db, pool, keyring):
    consultation = uuid.uuid4()
    payload = v1_payload(submission_id=uuid.uuid4(), consultation_id=consultation, patient_id=uuid.uuid4(),
                         customer_id="cus_v1")
    # As the previous release appended it: schema version 1, no consent in the payload.
    await db.execute("INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, "
                     "business_id, payload, metadata) VALUES ($1, 'v1-stream', 1, 'consult.submitted', 1, 1, "
                     "$2::jsonb, '{}'::jsonb)", uuid.uuid4(), payload)
    await Projector(pool, keyring).sweep()
    live = await actual_tables(db)
    assert live["consultations"][consultation]["consent_accepted_at"] is None

    await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring)

    assert await actual_tables(db) == live
    assert all(verdict.equal for verdict in await verify(db, list(PROJECTIONS), keyring))


async def test_a_rebuilds_backends_on_this_machine_yield_the_cpu_like_the_command(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        backend = psutil.Process(conn.get_server_pid())
        before = backend.nice()
        await rebuild_command._yield_cpu(conn, local=False)  # another host's pid means nothing here
        assert backend.nice() == before
        await rebuild_command._yield_cpu(conn, local=True)
        assert backend.nice() == max(before, rebuild_command.REBUILD_NICENESS)
    finally:
        await conn.close()
    assert rebuild_command._is_local(database_url)
    assert rebuild_command._is_local("postgresql://u@/db?host=/var/run/postgresql")
    assert not rebuild_command._is_local("postgresql://u@db.internal:5432/db")


async def test_every_connection_that_writes_the_shadow_writes_back_as_it_goes(projected, settings, keyring):
    seen: list[str] = []

    async def note(conn: asyncpg.Connection) -> None:
        seen.append(await conn.fetchval("SHOW backend_flush_after"))

    await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring, on_connect=note)

    assert len(seen) >= 3 and set(seen) == {"256kB"}  # bulk reader and writer, the tail's pool
