"""SIGKILL the real server mid-stream: every 2xx has its event and outbox row, no event lacks one,
and a client retrying with the same key after the restart gets exactly one event per key."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.support.payloads import headers, submission
from tests.support.servers import ApiProcess

URL = "/v1/businesses/acme/consult-submissions"
CLIENTS = 8


async def send_until_gone(base_url: str, key: str, stop_after: float) -> tuple[dict[str, int], list[str]]:
    """Stream submissions from CLIENTS concurrent clients until the server dies (or time is up).

    Returns the keys that got a 2xx (with their position) and the keys whose fate is unknown.
    """
    acknowledged: dict[str, int] = {}
    unknown: list[str] = []
    deadline = time.monotonic() + stop_after

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            idem = uuid.uuid4().hex
            try:
                response = await client.post(URL, json=submission(customer_id=f"cus_{idem}"),
                                             headers=headers(key, idem))
            except httpx.HTTPError:
                unknown.append(idem)
                return
            assert response.status_code == 202, response.text
            acknowledged[idem] = response.json()["position"]

    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(CLIENTS)))
    return acknowledged, unknown


@pytest.mark.parametrize("faults", ["", "append.before_commit=delay:20"], ids=["plain", "slow-commits"])
async def test_sigkill_mid_stream_loses_no_acknowledged_submission(settings, tenant, db, tmp_path, faults):
    server = ApiProcess({"DATABASE_URL": settings.database_url, "INTAKE_FAULTS": faults}, tmp_path / "api.log")
    server.start()
    try:
        sending = asyncio.create_task(send_until_gone(server.base_url, tenant.key, stop_after=20))
        # Kill once a steady stream of requests is flowing (and, with slow commits, mid-transaction).
        deadline = time.monotonic() + 15
        while await db.fetchval("SELECT count(*) FROM events") < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        server.kill()
        acknowledged, unknown = await asyncio.wait_for(sending, timeout=30)
        assert len(acknowledged) >= 50 and unknown, "the kill did not land mid-stream"

        rows = {r["idempotency_key"]: r for r in await db.fetch(
            "SELECT e.idempotency_key, e.position, o.position AS outbox FROM events e "
            "LEFT JOIN outbox o USING (position)")}
        for idem, position in acknowledged.items():
            assert idem in rows, "an acknowledged submission was lost"
            assert rows[idem]["position"] == position and rows[idem]["outbox"] == position
        assert all(r["outbox"] is not None for r in rows.values()), "an event lacks its outbox row"

        # After a restart the client retries what it never heard back about: exactly one event per key.
        server.start()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            for idem in unknown:
                response = await client.post(URL, json=submission(customer_id=f"cus_{idem}"),
                                             headers=headers(tenant.key, idem))
                assert response.status_code == 202
                replayed = response.headers.get("idempotent-replayed") == "true"
                assert replayed == (idem in rows), "a committed request was not replayed, or vice versa"
        per_key = await db.fetch("SELECT idempotency_key, count(*) FROM events GROUP BY 1 HAVING count(*) > 1")
        assert per_key == []
        assert await db.fetchval("SELECT count(*) FROM events e LEFT JOIN outbox o USING (position) "
                                 "WHERE o.position IS NULL") == 0
    finally:
        server.stop()
