"""`intake events replay` as a real process against a real log: JSON lines in position order, each
filter selecting exactly its events, usage errors, a reader that leaves early, and the memory bound."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import asyncpg
import pytest

from tests.support.consults import decide, submit
from tests.support.payloads import decision, headers, submission
from tests.support.reads import api, business_id
from tests.support.replay import ROOT, cli_env, generate_submissions, replay, replay_argv, replay_jsonl

LINE_FIELDS = {"position", "event_id", "stream_id", "stream_version", "type", "schema_version", "recorded_at",
               "data", "metadata"}
MAX_RSS_MB = 150


@pytest.fixture
async def history(settings, tenant, other_tenant, db) -> dict[str, object]:
    """Two businesses' events: submissions, a decision, a deduplicated resubmission."""
    async with api(settings) as client:
        first = await submit(client, tenant, customer_id="cus_a")
        await submit(client, tenant, customer_id="cus_b")
        duplicate = await client.post(f"/v1/businesses/{tenant.slug}/consult-submissions",
                                      json=submission(customer_id="cus_a"), headers=headers(tenant.key))
        assert duplicate.status_code == 200, duplicate.text
        decided = await decide(client, tenant.slug, first["consultation_id"], decision(), tenant.key)
        assert decided.status_code == 200, decided.text
        await submit(client, other_tenant, customer_id="cus_a")
    return {"consultation": first["consultation_id"], "acme": await business_id(db, tenant)}


async def all_events(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT position, stream_id, event_type, schema_version, business_id, recorded_at, "
                          "payload ->> 'consultation_id' AS consultation FROM events ORDER BY position")


async def test_jsonl_has_every_event_in_position_order_with_its_fields(settings, history, db):
    lines = await replay_jsonl(settings.database_url)
    rows = await all_events(db)
    assert [line["position"] for line in lines] == [row["position"] for row in rows] and len(rows) == 5
    assert all(set(line) == LINE_FIELDS for line in lines)
    first = lines[0]
    assert (first["type"], first["schema_version"], first["stream_version"]) == ("consult.submitted", 1, 1)
    assert first["data"]["consultation_id"] == history["consultation"] and first["data"]["type"] == "consult.submitted.v1"
    assert first["metadata"]["actor"].startswith("api_key:")
    assert dt.datetime.fromisoformat(first["recorded_at"]) == rows[0]["recorded_at"]


async def test_each_filter_selects_exactly_its_events(settings, history, db):
    rows = await all_events(db)
    stream, middle = rows[1]["stream_id"], rows[2]["recorded_at"]

    async def positions(*args: str) -> list[int]:
        return [line["position"] for line in await replay_jsonl(settings.database_url, *args)]

    def expected(keep) -> list[int]:
        found = [row["position"] for row in rows if keep(row)]
        assert found, "a filter under test must select something"
        return found

    assert await positions("--business", "acme") == expected(lambda r: r["business_id"] == history["acme"])
    assert await positions("--stream", stream) == expected(lambda r: r["stream_id"] == stream)
    assert await positions("--consultation", history["consultation"]) == expected(
        lambda r: r["consultation"] == history["consultation"])
    assert await positions("--type", "consult.decided", "--type", "consult.submission_deduplicated.v1") == expected(
        lambda r: r["event_type"] in {"consult.decided", "consult.submission_deduplicated"})
    assert await positions("--type", "consult.submitted.v1") == expected(lambda r: r["event_type"] == "consult.submitted")
    low, high = rows[1]["position"], rows[3]["position"]
    assert await positions("--from-position", str(low), "--to-position", str(high)) == expected(
        lambda r: low <= r["position"] <= high)
    assert await positions("--since", middle.isoformat()) == expected(lambda r: r["recorded_at"] >= middle)
    assert await positions("--until", middle.isoformat()) == expected(lambda r: r["recorded_at"] < middle)
    assert await positions("--business", "acme", "--type", "consult.submitted") == expected(
        lambda r: r["business_id"] == history["acme"] and r["event_type"] == "consult.submitted")


async def test_the_table_format_is_a_header_and_a_line_per_event(settings, history, db):
    done = await replay(settings.database_url, "--format", "table", "--consultation", history["consultation"])
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split()[:3] == ["POSITION", "RECORDED_AT", "TYPE"]
    assert [line.split()[2] for line in lines] == [
        "consult.submitted.v1", "consult.submission_deduplicated.v1", "consult.decided.v1"]
    assert "Lovelace" not in done.stdout  # the table names events; the payloads are in jsonl


@pytest.mark.parametrize(("args", "says"), [
    (["--type", "consult.exploded"], "unknown event type"),
    (["--since", "2026-03-01T14:02:00"], "RFC 3339"),
    (["--until", "yesterday"], "RFC 3339"),
    (["--from-position", "-1"], "--from-position"),
    (["--from-position", "9", "--to-position", "3"], "--from-position is after --to-position"),
    (["--consultation", "not-a-uuid"], "--consultation"),
    (["--as-of", "2026-03-01T14:02:00Z", "--type", "consult.decided"], "--as-of takes only"),
    (["--format", "xml"], "--format"),
])
async def test_a_usage_error_exits_2_with_a_clear_line(database_url, args, says):
    done = await replay(database_url, *args)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr


async def test_an_unknown_business_exits_1_with_one_line(settings, tenant):
    done = await replay(settings.database_url, "--business", "nobody-here")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "intake: error: no business with that slug\n"


async def test_a_reader_that_leaves_after_one_line_ends_the_replay_quietly(settings, tenant, db):
    await generate_submissions(db, await business_id(db, tenant), 20_000)  # far more than a pipe buffer
    process = await asyncio.to_thread(subprocess.Popen, replay_argv("--format", "jsonl"), cwd=ROOT,
                                      env=cli_env(settings.database_url), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
    first = await asyncio.to_thread(process.stdout.readline)
    process.stdout.close()  # what `| head -1` does once it has its line
    _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    assert b'"position"' in first
    assert process.returncode == 0 and stderr == b"", stderr


async def test_replaying_200_000_events_to_jsonl_stays_under_150_mb(settings, tenant, db):
    await generate_submissions(db, await business_id(db, tenant), 200_000)
    # Measured in a fresh parent, so that RUSAGE_CHILDREN is this replay's alone.
    measure = ("import resource, subprocess, sys; "
               f"done = subprocess.run({replay_argv('--format', 'jsonl')!r}, stdout=subprocess.DEVNULL); "
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", measure], capture_output=True, text=True,
                                   cwd=ROOT, timeout=300, env=cli_env(settings.database_url))
    returncode, max_rss_kb = map(int, done.stdout.split())
    assert returncode == 0, done.stderr
    assert max_rss_kb / 1024 < MAX_RSS_MB, f"peak RSS {max_rss_kb / 1024:.0f} MB"
    assert await db.fetchval("SELECT count(*) FROM events") == 200_000


