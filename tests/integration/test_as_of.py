"""`--as-of` and `?as_of=`: the read models folded from the log equal what the read tables and the
API said at that moment of a scripted history; a transaction that starts before TIME and commits
after it is not in the state at TIME, though it was recorded before TIME."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from projections.as_of import SETTLE_TIMEOUT_S
from projections.projector import Projector
from service.devstack import EmbeddedPostgres
from tests.support.consults import decide, submit
from tests.support.payloads import decision
from tests.support.reads import api, business_id, ok, read
from tests.support.replay import ROOT, cli_env, generate_submissions, replay, replay_argv, replay_jsonl

TABLES = {"patients": "patient_id", "consultations": "consultation_id", "approvals": "consultation_id"}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=5) as pool:
        yield pool


def normal(value: Any) -> Any:
    """A value as JSON shows it, times as instants (so '+00:00' and 'Z' compare equal)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, str) and len(value) > 19 and value[10] == "T":
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    return value if value is None or isinstance(value, int | str) else str(value)


def tables_of(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {table: sorted(({k: normal(v) for k, v in row.items()} for row in rows.get(table, [])),
                          key=lambda row: str(row[TABLES[table]])) for table in TABLES}


async def read_tables(db: asyncpg.Connection, business: int, consultation: str | None = None) -> dict[str, Any]:
    """The read tables of a business (or of one consultation and its patient), as they are now."""
    rows = {table: [dict(r) for r in await db.fetch(f"SELECT * FROM {table} WHERE business_id = $1", business)]
            for table in TABLES}
    if consultation is not None:
        rows["consultations"] = [r for r in rows["consultations"] if str(r["consultation_id"]) == consultation]
        rows["approvals"] = [r for r in rows["approvals"] if str(r["consultation_id"]) == consultation]
        patients = {r["patient_id"] for r in rows["consultations"]}
        rows["patients"] = [r for r in rows["patients"] if r["patient_id"] in patients]
    return tables_of(rows)


async def as_of(database_url: str, at: dt.datetime, *args: str) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in await replay_jsonl(database_url, "--as-of", at.isoformat(), *args):
        rows.setdefault(line["table"], []).append(line["row"])
    return tables_of(rows)


async def test_as_of_each_moment_equals_what_the_read_tables_and_the_api_said_then(
        settings, tenant, other_tenant, db, pool, keyring):
    acme = await business_id(db, tenant)
    moments: list[tuple[dt.datetime, dict[str, Any], dict[str, Any], Any]] = []
    async with api(settings) as client:
        first: dict[str, Any] = {}

        async def moment() -> None:
            await Projector(pool, keyring).sweep()
            tables = await read_tables(db, acme)
            mine = await read_tables(db, acme, first["consultation_id"]) if first else None
            answer = (await ok(read(client, tenant, f"/consultations/{first['consultation_id']}"))) if first else None
            moments.append((await db.fetchval("SELECT clock_timestamp()"), tables, mine, answer))

        await moment()
        first.update(await submit(client, tenant, customer_id="cus_a"))
        await moment()
        assert (await decide(client, "acme", first["consultation_id"], decision(), tenant.key)).status_code == 200
        await moment()
        again = await submit(client, tenant, customer_id="cus_a", patient={
            "first_name": "Ada", "last_name": "Byron", "email": "ada@example.org", "date_of_birth": "1990-12-10"})
        await submit(client, other_tenant, customer_id="cus_a")
        await moment()
        await submit(client, tenant, customer_id="cus_b")
        await moment()
        assert (await decide(client, "acme", again["consultation_id"], decision("rejected"),
                             tenant.key)).status_code == 200
        await moment()
        for at, tables, mine, answer in moments:
            assert await as_of(settings.database_url, at, "--business", "acme") == tables, at
            path = f"/consultations/{first['consultation_id']}"
            then = await read(client, tenant, path, key=tenant.key, as_of=at.isoformat())
            if mine is None:
                assert then.status_code == 404, then.text
                continue
            assert await as_of(settings.database_url, at, "--consultation", first["consultation_id"]) == mine, at
            assert then.status_code == 200 and then.json() == answer, at
    assert [len(tables["consultations"]) for _, tables, _, _ in moments] == [0, 1, 1, 2, 3, 3]
    assert moments[3][2]["patients"][0]["last_name"] == "Byron"  # the patient follows the later submission


async def test_a_transaction_open_at_time_and_committed_after_it_is_not_in_the_state_at_time(
        settings, tenant, db, database_url):
    acme = await business_id(db, tenant)
    late = await asyncpg.connect(database_url)
    try:
        async with late.transaction():
            await generate_submissions(late, acme, 1, prefix="late_")
            at = await db.fetchval("SELECT clock_timestamp()")
        recorded_at, committed_at = await db.fetchrow(
            "SELECT recorded_at, pg_xact_commit_timestamp(tx_id::xid) FROM events")
    finally:
        await late.close()
    after = await db.fetchval("SELECT clock_timestamp()")
    assert recorded_at < at < committed_at <= after  # the premise: recorded before TIME, committed after
    assert (await as_of(settings.database_url, at, "--business", "acme"))["consultations"] == []
    assert [row["customer_id"] for row in (await as_of(settings.database_url, after))["consultations"]] == ["late_1"]
    consultation = await db.fetchval("SELECT payload ->> 'consultation_id' FROM events")
    async with api(settings) as client:
        path = f"/consultations/{consultation}"
        assert (await read(client, tenant, path, key=tenant.key, as_of=at.isoformat())).status_code == 404
        found = await ok(read(client, tenant, path, key=tenant.key, as_of=after.isoformat()))
    assert found["customer_id"] == "late_1" and found["status"] == "pending"


async def test_a_time_later_than_now_is_refused_with_one_line(settings, tenant):
    done = await replay(settings.database_url, "--as-of", "2999-01-01T00:00:00Z")
    assert done.returncode == 1 and done.stderr.startswith("intake: error: The time is later than now")
    assert len(done.stderr.splitlines()) == 1


async def test_without_commit_timestamps_as_of_refuses_rather_than_guess(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg", durable=False, settings={"track_commit_timestamp": "off"})
    server.start()
    try:
        done = await replay(server.url(), "--as-of", "2026-01-01T00:00:00Z")
    finally:
        server.stop()
    assert done.returncode == 1 and "track_commit_timestamp off" in done.stderr and "Traceback" not in done.stderr


async def test_as_of_waits_for_transactions_in_progress_before_it_reads(settings, tenant, db, database_url):
    """A commit is stamped before it becomes visible: as-of must not read while a transaction that
    was running when it read the clock may still be finishing."""
    open_tx = await asyncpg.connect(database_url)
    transaction = open_tx.transaction()
    await transaction.start()
    await generate_submissions(open_tx, await business_id(db, tenant), 1, prefix="open_")
    at = await db.fetchval("SELECT clock_timestamp()")
    process = await asyncio.to_thread(subprocess.Popen, replay_argv("--as-of", at.isoformat(), "--format", "jsonl"),
                                      cwd=ROOT, env=cli_env(settings.database_url), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'intake-replay' "
                                    "AND query LIKE '%JOIN pg_locks own%'"):
            assert time.monotonic() < deadline and process.poll() is None, "as-of never started waiting"
            await asyncio.sleep(0.02)
        assert process.poll() is None  # still waiting on the open transaction
    finally:
        await transaction.commit()
        await open_tx.close()
    stdout, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, stderr
    assert stdout == b""  # the transaction committed after TIME: nothing had committed by then


async def test_a_long_transaction_that_never_wrote_to_the_log_does_not_hold_as_of_back(settings, tenant, db, database_url):
    """Such a transaction (a `projections verify`, a report) cannot add events: waiting for it would
    only turn every `?as_of` read into a 503 for as long as it runs."""
    async with api(settings) as client:
        submitted = await submit(client, tenant)
        bystander = await asyncpg.connect(database_url)
        try:
            async with bystander.transaction():
                await bystander.execute("CREATE TEMP TABLE report (n int)")  # it has a transaction id now
                assert await bystander.fetchval("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
                at = await db.fetchval("SELECT clock_timestamp()")
                started = time.monotonic()
                found = await ok(read(client, tenant, f"/consultations/{submitted['consultation_id']}",
                                      key=tenant.key, as_of=at.isoformat()))
                waited = time.monotonic() - started
                still_open = await bystander.fetchval("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
        finally:
            await bystander.close()
    assert found["status"] == "pending" and still_open
    assert waited < SETTLE_TIMEOUT_S / 2, waited  # answered, not after waiting out the bystander
