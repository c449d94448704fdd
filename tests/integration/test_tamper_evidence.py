"""Issue 12's acceptance: after a clean `intake events verify` (exit 0), each edit an attacker with
superuser rights can make to the log or its seals is caught (exit 1, naming where), and proofs
check offline. Every command runs as a real process; the log is generated, several events a stream."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from events.seals import new_private_text, private_key, public_text
from tests.support.generated_log import write_log
from tests.support.integrity import as_attacker, intake
from tests.support.reads import business_id
from tests.support.replay import generate_submissions

EVENTS = 120


@pytest.fixture
async def sealed(db, tenant, settings):
    """A log of EVENTS events under seal 1, verified clean; returns the commands' environment."""
    await write_log(db, business_id=await business_id(db, tenant), events=EVENTS)
    env = {"DATABASE_URL": settings.database_url, "INTAKE_SEAL_KEY": new_private_text(), "PATH": "/usr/bin:/bin"}
    done = await intake(env, "events", "seal")
    assert done.returncode == 0 and f"seal 1: {EVENTS} events" in done.stdout, done.stderr
    clean = await intake(env, "events", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"intact: {EVENTS} events" in clean.stdout and f"{EVENTS} sealed, 0 unsealed" in clean.stdout
    return env


async def broken(env: dict[str, str], *args: str) -> str:
    """verify's output, which must be an exit 1."""
    done = await intake(env, "events", "verify", *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("BROKEN"), done.stdout
    return done.stdout


async def a_middle_event(db: asyncpg.Connection) -> asyncpg.Record:
    return await db.fetchrow("SELECT position, stream_id, stream_version FROM events "
                             "WHERE stream_version = 2 ORDER BY position LIMIT 1")


@pytest.mark.parametrize("column", ["payload", "metadata"])
async def test_an_edited_event_is_named_by_its_position(db, sealed, column):
    event = await a_middle_event(db)
    async with as_attacker(db):
        await db.execute(f"UPDATE events SET {column} = {column} || '{{\"forged\": true}}' WHERE position = $1",
                         event["position"])
    assert f"position {event['position']}: edited" in await broken(sealed)


async def test_an_event_deleted_from_the_middle_of_its_stream_is_missing(db, sealed):
    event = await a_middle_event(db)
    async with as_attacker(db):
        await db.execute("DELETE FROM events WHERE position = $1", event["position"])
    out = await broken(sealed)
    assert f"missing: stream {event['stream_id']} version 3 follows version 1" in out


async def test_the_last_event_of_a_stream_deleted_is_caught_by_the_seal(db, sealed):
    last = await db.fetchrow("SELECT position, stream_id FROM events e WHERE stream_version = "
                             "(SELECT max(stream_version) FROM events WHERE stream_id = e.stream_id) LIMIT 1")
    async with as_attacker(db):
        await db.execute("DELETE FROM events WHERE position = $1", last["position"])
    assert "seal 1: " in await broken(sealed)


async def test_two_events_with_their_contents_swapped_are_reported(db, sealed):
    first, second = await db.fetch("SELECT position FROM events ORDER BY position LIMIT 2")
    async with as_attacker(db):
        await db.execute("""UPDATE events e SET payload = o.payload, metadata = o.metadata FROM events o
                            WHERE (e.position, o.position) IN (($1, $2), ($2, $1))""",
                         first["position"], second["position"])
    assert f"position {first['position']}: edited" in await broken(sealed)


async def test_a_forged_event_after_the_last_seal_is_unsealed_then_caught_against_an_exported_copy(
        db, sealed, tmp_path: Path):
    await generate_submissions(db, 1, 10, prefix="honest_")  # honest events, under an honest seal 2
    assert (await intake(sealed, "events", "seal")).returncode == 0
    export = tmp_path / "seals.jsonl"
    export.write_text((await intake(sealed, "events", "seals", "--export")).stdout)
    assert len(export.read_text().splitlines()) == 2
    async with as_attacker(db):  # the attacker removes seal 2, appends (chained by the trigger) and re-seals
        await db.execute("DELETE FROM seals WHERE seal_no = 2")
    await db.execute("INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, "
                     "business_id, payload, metadata) VALUES (gen_random_uuid(), 'forged', 1, 'consult.submitted', "
                     "1, 1, '{\"forged\": true}', '{}')")
    tail = await intake(sealed, "events", "verify")
    assert tail.returncode == 0 and "1 unsealed" in tail.stdout, tail.stdout
    assert (await intake(sealed, "events", "seal")).returncode == 0
    assert (await intake(sealed, "events", "verify")).returncode == 0  # the attacker holds the key too
    assert "seal 2: differs from copy" in await broken(sealed, "--against", str(export))


async def test_an_edited_seal_breaks_its_signature(db, sealed):
    async with as_attacker(db):
        await db.execute("UPDATE seals SET tree_size = tree_size - 1 WHERE seal_no = 1")
    assert "seal 1: bad signature" in await broken(sealed)


async def test_seals_signed_by_another_key_are_refused(sealed):
    assert "seal 1: bad signature" in await broken({**sealed, "INTAKE_SEAL_KEY": new_private_text()})


async def test_verify_from_a_seal_checks_only_what_came_after_it(db, sealed):
    await generate_submissions(db, 1, 15, prefix="later_")
    assert (await intake(sealed, "events", "seal")).returncode == 0
    incremental = await intake(sealed, "events", "verify", "--from-seal", "1")
    assert incremental.returncode == 0 and f"intact: {EVENTS + 15} events" in incremental.stdout, incremental.stdout
    late = await db.fetchval("SELECT max(position) FROM events")
    async with as_attacker(db):
        await db.execute("UPDATE events SET metadata = '{}' WHERE position = $1", late)
    assert f"position {late}: edited" in await broken(sealed, "--from-seal", "1")


async def test_proofs_hold_offline_and_fail_for_a_changed_event(db, sealed, tmp_path: Path):
    key = public_text(private_key(sealed["INTAKE_SEAL_KEY"]).public_key())
    offline = {"PATH": "/usr/bin:/bin"}  # no database, no seal key: the public key alone
    position = (await a_middle_event(db))["position"]
    proof = await intake(sealed, "events", "prove", str(position))
    assert proof.returncode == 0, proof.stderr
    document = json.loads(proof.stdout)
    assert document["kind"] == "inclusion" and document["event"]["position"] == position
    path = tmp_path / "inclusion.json"
    path.write_text(proof.stdout)
    held = await intake(offline, "events", "check-proof", str(path), "--public-key", key)
    assert held.returncode == 0 and "proof holds" in held.stdout, held.stdout + held.stderr
    document["event"]["payload"] = document["event"]["payload"].replace("}", ', "x": 1}', 1)
    path.write_text(json.dumps(document))
    changed = await intake(offline, "events", "check-proof", str(path), "--public-key", key)
    assert changed.returncode == 1 and "the event was changed" in changed.stdout


async def test_a_consistency_proof_holds_offline_and_fails_for_another_old_root(db, sealed, tmp_path: Path):
    key = public_text(private_key(sealed["INTAKE_SEAL_KEY"]).public_key())
    await generate_submissions(db, 1, 7, prefix="later_")
    assert (await intake(sealed, "events", "seal")).returncode == 0
    proof = await intake(sealed, "events", "prove", "--consistency", str(EVENTS), str(EVENTS + 7))
    assert proof.returncode == 0, proof.stderr
    path = tmp_path / "consistency.json"
    path.write_text(proof.stdout)
    assert (await intake({}, "events", "check-proof", str(path), "--public-key", key)).returncode == 0
    document = json.loads(proof.stdout)
    document["path"][0] = "00" * 32
    path.write_text(json.dumps(document))
    refused = await intake({}, "events", "check-proof", str(path), "--public-key", key)
    assert refused.returncode == 1 and "is not a prefix" in refused.stdout
