"""Keys of the encryption at rest, against real PostgreSQL and real processes: a ciphertext moved to
another event does not decrypt (a clear error, no crash); a missing or wrong key-encryption key stops
the service at start with nothing written; the KEK rotates without touching events; concurrent first
submissions of one patient share one key; events written before encryption are sealed once, and
never after the log is sealed."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from events.seals import new_private_text
from projections.projector import Projector
from service import domain
from service.keyring import generate_kek
from tests.support.consults import SUBMIT, submit
from tests.support.old_releases import v1_payload
from tests.support.payloads import headers, submission
from tests.support.privacy import intake, patient, tables_containing
from tests.support.reads import api, assert_problem, business_id, read
from tests.support.replay import replay_jsonl
from tests.support.servers import free_port

_COUNTS = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM patient_keys), " \
          "(SELECT count(*) FROM key_encryption_keys)"


@pytest.fixture
async def pool(database_url: str):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


async def test_a_ciphertext_moved_to_another_event_fails_to_decrypt_with_a_clear_error(settings, tenant, db,
                                                                                       pool, keyring):
    async with api(settings) as client:
        one = await submit(client, tenant, customer_id="cus_move", product_id="p1")
        two = await submit(client, tenant, customer_id="cus_move", product_id="p2")  # same patient, same key
        # As a superuser would: lift the append-only trigger, move one event's envelope onto the other.
        async with db.transaction():
            await db.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
            await db.execute("UPDATE events SET payload = jsonb_set(payload, '{sealed}', "
                             "(SELECT payload -> 'sealed' FROM events WHERE position = $1)) WHERE position = $2",
                             one["position"], two["position"])
            await db.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete")
        moved = await read(client, tenant, f"/consultations/{two['consultation_id']}/history", key=tenant.key)
        intact = await read(client, tenant, f"/consultations/{one['consultation_id']}/history", key=tenant.key)
    problem = assert_problem(moved, 409, "unreadable-event")
    assert "does not decrypt" in problem["detail"] and "Persistent cough" not in moved.text
    assert intact.status_code == 200 and intact.json()[0]["data"]["chief_complaint"] == "Persistent cough for two weeks"
    done = await intake(settings, "events", "replay", "--format", "jsonl")
    assert done.returncode == 1 and "does not decrypt" in done.stderr and "Traceback" not in done.stderr
    await Projector(pool, keyring).sweep()  # recorded against its stream, not a crash
    failed = await db.fetch("SELECT projection, error FROM projection_failures WHERE stream_id = $1",
                            (await db.fetchval("SELECT stream_id FROM events WHERE position = $1", two["position"])))
    assert failed and all("Undecryptable" in row["error"] for row in failed)


@pytest.mark.parametrize("command", [("serve", "--port", str(free_port())), ("worker",)])
async def test_a_missing_or_wrong_kek_refuses_to_start_and_writes_nothing(settings, tenant, db, command):
    async with api(settings) as client:  # the right KEK, registered by this start
        await submit(client, tenant)
    before = await db.fetchrow(_COUNTS)
    missing = await intake(settings, *command, env={"INTAKE_KEK": ""}, timeout=60)
    wrong = await intake(settings, *command, env={"INTAKE_KEK": generate_kek()}, timeout=60)
    assert missing.returncode != 0 and "no key-encryption key is configured" in missing.stderr
    assert wrong.returncode != 0 and "which is not configured" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr
    assert await db.fetchrow(_COUNTS) == before


async def test_rotating_the_kek_rewraps_every_key_and_then_the_old_kek_is_not_needed(settings, tenant, db):
    async with api(settings) as client:
        for n in range(3):
            await submit(client, tenant, customer_id=f"cus_rot_{n}", patient=patient("Rota", f"Tion{n}",
                                                                                      f"r{n}@example.org", "1970-01-01"))
    events = await db.fetchval("SELECT md5(string_agg(payload::text, '' ORDER BY position)) FROM events")
    new, old = generate_kek(), settings.kek or ""
    done = await intake(settings, "keys", "rotate-kek", env={"INTAKE_KEK": f"{new},{old}"})
    assert done.returncode == 0 and "rewrapped 3 data key(s)" in done.stdout and "no longer needed" in done.stdout
    assert await db.fetchval("SELECT md5(string_agg(payload::text, '' ORDER BY position)) FROM events") == events
    read_back = await replay_jsonl_with(settings, {"INTAKE_KEK": new})
    assert sorted(e["data"]["patient"]["last_name"] for e in read_back) == ["Tion0", "Tion1", "Tion2"]
    refused = await intake(settings, "worker", env={"INTAKE_KEK": old}, timeout=60)
    assert refused.returncode != 0 and "which is not configured" in refused.stderr


async def replay_jsonl_with(settings, env: dict[str, str]) -> list[dict]:
    done = await intake(settings, "events", "replay", "--format", "jsonl", "--type", "consult.submitted", env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_concurrent_first_submissions_of_one_patient_share_one_live_key(settings, tenant, db):
    # Two API instances (two keyrings, as two processes would have): each makes its own key for the
    # patient, one wins the database's one-live-key race, the other's requests re-encrypt with it.
    async with api(settings) as one, api(settings) as two:
        answers = await asyncio.gather(*(
            client.post(SUBMIT.format(slug="acme"), json=submission(customer_id="cus_race", product_id=f"p{n}-{side}"),
                        headers=headers(tenant.key)) for n in range(20) for side, client in enumerate((one, two))))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers if a.status_code != 202]
    patient_id = domain.patient_id_for(await business_id(db, tenant), "cus_race")
    keys = await db.fetch("SELECT key_id FROM patient_keys WHERE patient_id = $1", patient_id)
    assert len(keys) == 1  # the loser's key was never stored: its batch wrote nothing
    sealed_with = await db.fetch("SELECT DISTINCT payload #>> '{sealed,key_id}' AS key_id FROM events "
                                 "WHERE event_type = 'consult.submitted'")
    assert [uuid.UUID(r["key_id"]) for r in sealed_with] == [keys[0]["key_id"]]
    events = await replay_jsonl(settings.database_url, "--type", "consult.submitted")
    assert len(events) == 40 and {e["data"]["patient"]["last_name"] for e in events} == {"Lovelace"}


async def test_events_written_before_encryption_are_sealed_once_and_never_after_a_seal(settings, tenant, db):
    business = await business_id(db, tenant)
    patient_id = domain.patient_id_for(business, "cus_legacy")
    payload = v1_payload(submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), patient_id=patient_id,
                         customer_id="cus_legacy")
    await db.execute("INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, "
                     "business_id, payload, metadata) VALUES ($1, 'legacy-slot', 1, 'consult.submitted', 1, $2, "
                     "$3::jsonb, '{\"request_id\": \"r\", \"actor\": \"old\", \"correlation_id\": \"r\"}')",
                     uuid.uuid4(), business, payload)
    assert await tables_containing(db, "Lovelace") == {"public.events", "public.event_rows"}
    done = await intake(settings, "patients", "encrypt-existing")
    assert done.returncode == 0 and "sealed the personal fields of 1 event(s)" in done.stdout, done.stderr
    assert await tables_containing(db, "Lovelace") == set()
    [event] = await replay_jsonl(settings.database_url, "--stream", "legacy-slot")
    assert (event["schema_version"], event["data"]["patient"]["last_name"]) == (1, "Lovelace")
    forgot = await intake(settings, "patients", "forget", "--business", "acme", "--customer", "cus_legacy")
    assert forgot.returncode == 0 and "destroyed 1 data key" in forgot.stdout
    seal_key = {"INTAKE_SEAL_KEY": new_private_text()}
    checked = await intake(settings, "events", "verify", env=seal_key)  # the rewrite re-chained its streams
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (await intake(settings, "events", "seal", env=seal_key)).returncode == 0
    refused = await intake(settings, "patients", "encrypt-existing")
    assert refused.returncode == 1 and "sealed" in refused.stderr
