"""The application's own connection (the `settings` fixture's app role, provisioned the way
`intake migrate` does it) cannot rewrite the log, change the schema or write configuration,
holds exactly the grants migration 0005 lists, and still runs the whole write and read path."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from service.roles import APP_GROUP, login_of
from tests.support.consults import submit
from tests.support.reads import api, read
from tests.support.workers import WorkerProcess

PROJECTION_DEADLINE_S = 30.0
READ_POLL_S = 0.05
# What the app role may do, per table: derived from sql/queries/*.sql (see 0005_app_role.sql).
UPSERTED = {"SELECT", "INSERT", "UPDATE"}
EXPECTED_GRANTS = {
    "events": {"SELECT", "INSERT"},
    "outbox": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "patients": UPSERTED, "consultations": UPSERTED, "approvals": UPSERTED,
    "projection_checkpoints": UPSERTED,
    "projection_failures": UPSERTED | {"DELETE"},
    "projection_floors": UPSERTED | {"DELETE"},
    "businesses": {"SELECT"}, "api_keys": {"SELECT"},
    "schema_migrations": {"SELECT"},
    # Keys: created and locked (FOR SHARE needs UPDATE) by appends, destroyed by the admin forget
    # endpoint; a process registers its KEK at start; every reader reads the log through event_rows.
    "patient_keys": UPSERTED, "key_encryption_keys": {"SELECT", "INSERT"}, "event_rows": {"SELECT"},
    "seals": {"SELECT", "INSERT"},  # the worker appends seals (migration 0011); nobody changes one
    # Partners are configuration the API only verifies against (0012); webhooks are run by the worker
    # and managed through the admin API (0013), attempts only ever appended.
    "partners": {"SELECT"}, "partner_secrets": {"SELECT"},
    "webhook_endpoints": UPSERTED, "webhook_cursor": UPSERTED, "webhook_deliveries": UPSERTED,
    "webhook_attempts": {"SELECT", "INSERT"},
}
PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"]


@pytest.fixture
async def app(settings):
    """A connection exactly like the API's and the workers'."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def refused(conn: asyncpg.Connection, statement: str) -> str:
    """The message PostgreSQL refuses `statement` with (the test fails if it is allowed)."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refusal:
        await conn.execute(statement)
    return str(refusal.value)


async def test_the_app_role_cannot_disable_the_log_s_triggers(app):
    assert "must be owner of table events" in await refused(
        app, "ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
    assert "must be owner" in await refused(app, "ALTER TABLE events DISABLE TRIGGER ALL")
    assert "session_replication_role" in await refused(app, "SET session_replication_role = replica")


@pytest.mark.parametrize("statement", [
    "UPDATE events SET payload = '{}'",
    "DELETE FROM events",
    "TRUNCATE events",
])
async def test_the_app_role_may_not_update_delete_or_truncate_the_log(app, statement):
    # The grant refuses it before the append-only trigger would ("the event log is append-only").
    assert "permission denied for table events" in await refused(app, statement)


@pytest.mark.parametrize(("statement", "why"), [
    ("CREATE TABLE scratch (id int)", "permission denied for schema public"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "permission denied for schema public"),
    ("DROP TABLE outbox", "must be owner of table outbox"),
    ("ALTER TABLE consultations ADD COLUMN note text", "must be owner of table consultations"),
    ("DROP FUNCTION events_are_immutable() CASCADE", "must be owner of function events_are_immutable"),
    ("TRUNCATE consultations", "permission denied for table consultations"),
    ("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'x', 'x')",
     "permission denied for table schema_migrations"),
    ("UPDATE schema_migrations SET checksum = 'x'", "permission denied for table schema_migrations"),
    ("DELETE FROM schema_migrations", "permission denied for table schema_migrations"),
    ("INSERT INTO api_keys (id, key_hash, is_admin, scopes) VALUES (gen_random_uuid(), 'x', true, '{}')",
     "permission denied for table api_keys"),
    ("UPDATE api_keys SET revoked_at = NULL", "permission denied for table api_keys"),
    ("INSERT INTO businesses (slug, name) VALUES ('evil', 'Evil')", "permission denied for table businesses"),
])
async def test_the_app_role_cannot_change_the_schema_its_history_or_the_keys(app, statement, why):
    assert why in await refused(app, statement)


async def test_the_app_role_owns_nothing_and_holds_exactly_the_listed_grants(db, settings):
    user = login_of(settings.database_url).user
    grants = {row["table"]: {p for p in PRIVILEGES if row[p]} for row in await db.fetch(
        "SELECT c.relname AS table, " + ", ".join(
            f"has_table_privilege($1, c.oid, '{p}') AS \"{p}\"" for p in PRIVILEGES)
        + " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')",
        user)}
    assert grants == EXPECTED_GRANTS  # a new table without grants, or a wider grant, shows here
    role = await db.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, "
        "ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "      WHERE m.member = r.oid) AS member_of, "
        "EXISTS (SELECT FROM pg_class WHERE relowner = r.oid) "
        "  OR EXISTS (SELECT FROM pg_proc WHERE proowner = r.oid) "
        "  OR EXISTS (SELECT FROM pg_namespace WHERE nspowner = r.oid) AS owns_something "
        "FROM pg_roles r WHERE rolname = $1", user)
    assert dict(role) == {"rolsuper": False, "rolcreaterole": False, "rolcreatedb": False, "rolbypassrls": False,
                          "rolreplication": False, "member_of": [APP_GROUP], "owns_something": False}
    sequences = await db.fetchval(  # identity columns need none: the appends below prove it
        "SELECT count(*) FROM pg_class WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace "
        "AND (has_sequence_privilege($1, oid, 'USAGE') OR has_sequence_privilege($1, oid, 'UPDATE'))", user)
    assert sequences == 0


async def test_a_submission_is_relayed_projected_and_read_back_as_the_app_role(
        settings, tenant, redis_server, db, tmp_path):
    # A Redis database of its own, so the worker meets no other test's jobs.
    worker = WorkerProcess({"DATABASE_URL": settings.database_url, "REDIS_URL": redis_server.url(9)},
                           tmp_path / "worker.log")
    worker.start()
    try:
        async with api(settings) as client:
            created = await submit(client, tenant)
            view = await read_when_projected(client, tenant, created)
    finally:
        worker.stop()
    assert view.json()["status"] == "pending", view.text
    assert view.json()["consultation_id"] == created["consultation_id"]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0  # relayed and deleted by the app role
    assert await db.fetchval("SELECT count(*) FROM projection_checkpoints WHERE version = 1") == 3


async def read_when_projected(client: httpx.AsyncClient, tenant, created: dict) -> httpx.Response:
    """Poll the consultation (read-your-writes) until the worker has projected it, or fail at the deadline."""
    deadline = time.monotonic() + PROJECTION_DEADLINE_S
    path = f"/consultations/{created['consultation_id']}"
    while True:
        response = await read(client, tenant, path, min_position=created["position"])
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response
        await asyncio.sleep(READ_POLL_S)
