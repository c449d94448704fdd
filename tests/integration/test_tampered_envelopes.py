"""A sealed envelope whose key id was tampered into something that is not a key id (text that is
not a uuid, a number, an object, or nothing at all), against real PostgreSQL: only that event is
unreadable, with the same clear error as a ciphertext moved between events. Every statement that
reads the log through `event_rows` (history, replay in both formats, the projector, the rebuild)
used to cast the key id for every row and so failed as a whole, for every consultation it read;
the history answered 500."""

from __future__ import annotations

import asyncpg
import pytest

from projections.projector import Projector
from tests.support.consults import submit
from tests.support.integrity import as_attacker
from tests.support.privacy import intake
from tests.support.reads import api, assert_problem, read

TAMPERED = {
    "text": "'\"not-a-key-id\"'::jsonb",
    "number": "'42'::jsonb",
    "object": "'{\"id\": 1}'::jsonb",
}


@pytest.fixture
async def pool(database_url: str):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


async def _tamper(db: asyncpg.Connection, position: int, how: str) -> None:
    """As a superuser would: the log's protections off, the envelope's key id rewritten."""
    change = ("payload #- '{sealed,key_id}'" if how == "missing"
              else f"jsonb_set(payload, '{{sealed,key_id}}', {TAMPERED[how]})")
    async with as_attacker(db):
        await db.execute(f"UPDATE events SET payload = {change} WHERE position = $1", position)


@pytest.mark.parametrize("how", [*TAMPERED, "missing"])
async def test_a_tampered_key_id_makes_only_its_event_unreadable(settings, tenant, db, pool, keyring, how):
    async with api(settings) as client:
        bad = await submit(client, tenant, customer_id="cus_tampered", product_id="p1")
        good = await submit(client, tenant, customer_id="cus_intact", product_id="p1")
        await _tamper(db, bad["position"], how)
        tampered = await read(client, tenant, f"/consultations/{bad['consultation_id']}/history", key=tenant.key)
        intact = await read(client, tenant, f"/consultations/{good['consultation_id']}/history", key=tenant.key)
    problem = assert_problem(tampered, 409, "unreadable-event")
    assert str(bad["event_id"]) in problem["detail"] and "Persistent cough" not in tampered.text
    assert intact.status_code == 200 and intact.json()[0]["data"]["chief_complaint"] == "Persistent cough for two weeks"

    for replay_format in ("jsonl", "table"):
        done = await intake(settings, "events", "replay", "--format", replay_format)
        assert done.returncode == 1, (replay_format, done.stdout[-500:], done.stderr)
        assert str(bad["event_id"]) in done.stderr and "Traceback" not in done.stderr, (replay_format, done.stderr)
        assert "does not decrypt" in done.stderr or "does not exist" in done.stderr, (replay_format, done.stderr)

    await Projector(pool, keyring).sweep()  # the tampered stream is parked; the intact one projected
    stream = await db.fetchval("SELECT stream_id FROM events WHERE position = $1", bad["position"])
    failed = await db.fetch("SELECT error FROM projection_failures WHERE stream_id = $1", stream)
    assert failed and all("Undecryptable" in row["error"] for row in failed)
    assert await db.fetchval("SELECT count(*) FROM consultations WHERE consultation_id = $1",
                             good["consultation_id"]) == 1

    # The rebuild parks the stream as the live projector did, and so agrees with it.
    for command in ("rebuild", "verify"):
        done = await intake(settings, "projections", command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    failed = await db.fetch("SELECT error FROM projection_failures WHERE stream_id = $1", stream)
    assert failed and all("Undecryptable" in row["error"] for row in failed)
