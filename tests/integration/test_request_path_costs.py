"""What the submission path no longer pays for, each checked where it shows: the collector, the
database's own view of the API's connections; and the guard that now runs without copies still guards."""

from __future__ import annotations

import asyncio
import gc
import uuid

import httpx

from events.sqlfiles import queries
from service.connections import _HeadWithBody
from service.http.app import YOUNG_COLLECTION_THRESHOLD
from tests.support.payloads import headers, submission
from tests.support.servers import running_api

URL = "/v1/businesses/acme/consult-submissions"


async def test_startup_freezes_what_it_built_so_full_collections_skip_it(settings):
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    gc.set_threshold(700, *thresholds[1:])  # CPython's default (an earlier app in this process raised it)
    try:
        async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/livez")).status_code == 200
            assert gc.get_freeze_count() > 10_000  # the routes, schemas and modules loaded for the app
            # and the young generation is collected every 20,000 net allocations, not every 700
            assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_api_connections_go_back_to_the_pool_without_a_reset_query(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        for n in range(5):
            created = await client.post(URL, json=submission(customer_id=f"cus_{n}"), headers=headers(tenant.key))
            assert created.status_code == 202, created.text
        last = await db.fetch("SELECT state, query FROM pg_stat_activity WHERE application_name = 'intake-api'")
    assert last, "the API held no connection to look at"
    for row in last:  # idle, and the last statement a transaction's end, not asyncpg's RESET ALL
        assert row["state"] == "idle" and "RESET ALL" not in row["query"] and "UNLISTEN" not in row["query"]


async def test_the_submission_guard_still_refuses_a_key_without_the_scope(settings, tenant):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        missing = await client.post(URL, json=submission(), headers={**headers(tenant.key), "Authorization": "Bearer ik_nope"})
        reader = await client.post(URL, json=submission(), headers=headers(tenant.read_only_key))
    assert missing.status_code == 401 and reader.status_code == 403



class _Sent:
    """A transport that records each send."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sends.append(data)

    def close(self) -> None:
        self.closed = True


async def test_a_response_head_waits_for_its_body_and_leaves_with_it():
    sent = _Sent()
    writer = _HeadWithBody(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
    writer.arm()
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert sent.sends == []
    writer.write(b"{}")
    writer.write(b"more")
    assert sent.sends == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"more"]


async def test_a_head_sent_alone_leaves_by_the_next_turn_of_the_loop_or_at_close():
    sent = _Sent()
    writer = _HeadWithBody(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
    writer.arm()
    writer.write(b"head")
    await asyncio.sleep(0)
    assert sent.sends == [b"head"]
    writer.arm()
    writer.write(b"second head")
    writer.close()
    assert sent.sends == [b"head", b"second head"] and sent.closed


async def _raw_exchange(base: str, request: bytes) -> bytes:
    """What one raw HTTP/1.1 exchange (Connection: close) receives."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    received = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    return received


async def test_get_and_head_responses_arrive_whole(settings):
    async with running_api(settings) as base:
        got = await _raw_exchange(base, b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head = await _raw_exchange(base, b"HEAD /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"}")
    assert head.startswith(b"HTTP/1.1 ") and head.endswith(b"\r\n\r\n")


async def test_a_submission_is_indexed_by_its_consultation_once_and_still_found_by_it(db):
    indexes = await db.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'events' AND indexdef LIKE '%consultation_id%'")
    assert len(indexes) == 1, indexes
    await db.execute("SET enable_seqscan = off")  # the table is small here; the question is which index serves it
    plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + queries("events")["stream_of_consultation"],
                                                    str(uuid.uuid4()), 1))
    assert "events_by_consultation" in plan, plan
